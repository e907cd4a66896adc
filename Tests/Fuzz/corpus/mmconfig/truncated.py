model = dict(
    backbone=dict(
        type='MLLA',
        embed_dim=96,
        depths=[3, 6, 21