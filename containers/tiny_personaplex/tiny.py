"""The tiny configuration of NVIDIA's PersonaPlex server (moshi-personaplex), shared by the model
maker and the launcher.

PersonaPlex's `moshi.models.loaders` builds the 7B LM and the Mimi codec from module-level
keyword dicts (no config file). `apply(loaders, text_card)` shrinks them in place before any
model is built. Kept from the real model: the 2048-entry codebooks (the server's silence and
sine token ids must exist), 16 codebooks for the LM (PersonaPlex forces dep_q=16) and the
delays; everything that costs time is tiny.
"""

from __future__ import annotations

from typing import Any

TINY_DIM = 64
CODEBOOK_SEED = 20261
SETTINGS_FILE = "tiny_personaplex.json"  # in the model folder: what apply() needs at serve time


def apply(loaders: Any, text_card: int) -> None:
    loaders._seanet_kwargs.update(dimension=TINY_DIM, n_filters=4)
    loaders._quantizer_kwargs.update(
        dimension=32, input_dimension=TINY_DIM, output_dimension=TINY_DIM
    )
    loaders._transformer_kwargs.update(
        d_model=TINY_DIM,
        num_heads=4,
        num_layers=1,
        dim_feedforward=256,
        input_dimension=TINY_DIM,
        output_dimensions=[TINY_DIM],
    )
    loaders._lm_kwargs.update(
        dim=TINY_DIM,
        text_card=text_card,
        num_heads=4,
        num_layers=1,
        depformer_dim=TINY_DIM,
        depformer_dim_feedforward=int(4.125 * TINY_DIM),
        depformer_num_heads=4,
        depformer_num_layers=1,
        context=3000,
    )


def apply_full_size(loaders: Any, text_card: int) -> None:
    """The real 7B configuration, but for the text vocabulary: a random model draws text tokens
    from its whole card, and the server looks each one up in the tokenizer, which is ours."""
    loaders._lm_kwargs.update(text_card=text_card)


def randomize_codebooks(mimi: Any, seed: int = CODEBOOK_SEED) -> None:
    """Fresh codebooks are all zero (every latent would be code 0): fill them with noise."""
    import torch
    from moshi.quantization.core_vq import EuclideanCodebook

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in mimi.modules():
            if isinstance(module, EuclideanCodebook):
                noise = torch.randn(module.embedding_sum.shape, generator=gen)
                module.embedding_sum.copy_(noise.to(module.embedding_sum.device))
                module.cluster_usage.fill_(1.0)
                module._initialized.fill_(1.0)
