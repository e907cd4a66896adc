model = dict(type='EncoderDecoder', backbone=dict(type='MLLA', embed_dim=96, depths=[3, 6, 21, 6], num_heads=[3, 6, 12, 24]))
