norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    backbone=dict(
        type='MLLA', embed_dims=96, depths=[2, 4, 8, 4],
        num_heads=[2, 4, 8, 16], mlp_ratio=4.0, embed_dim=64, norm_cfg=dict(type='LN', requires_grad=True)),
    decode_head=dict(type='UPerHead', in_channels=[64, 128, 256, 512], pool_scales=(1, 2, 3, 6), channels=256,
                     num_classes=21, norm_cfg=norm_cfg),
    auxiliary_head=dict(type='FCNHead', in_channels=256, channels=128, num_classes=21))
img_norm_cfg = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', img_scale=(1024, 512), flip=False)]
