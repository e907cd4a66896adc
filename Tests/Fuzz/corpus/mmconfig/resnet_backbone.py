model = dict(backbone=dict(type='ResNetV1c', depth=50), decode_head=dict(type='UPerHead', channels=512, num_classes=150))
