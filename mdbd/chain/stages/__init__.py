"""The study's stages, one module per notebook, so that notebooks stay thin and their logic is tested:
data (01), training (02), ablation (03), comparison (04), runtime (06), visual (07); common holds what they share.
05 curves needs only mdbd.evaluation.plots. Imported by module: `from mdbd.chain.stages import ablation`.
"""
