"""ResNet-20 for CIFAR-10 (the course's given file; the grader always uses this trusted copy).

``ResNetCIFAR(num_layers=20, Nbits=None, symmetric=False)``: a head 3x3 convolution, three stages
of ``(num_layers - 2) // 6`` residual blocks (16, 32, 64 channels) and a final linear layer. The head
convolution and the final FC stay in full precision; the residual blocks quantize their weights
to ``Nbits`` bits through ``FP_Conv``. Prunable layers are named ``head_conv.0.conv``,
``body_op.<i>.conv1.0.conv``, ``body_op.<i>.conv2.0.conv`` and ``final_fc.linear``; the shortcut
convolutions are ``body_op.<i>.id_mapping.0.conv``.
"""

import torch.nn as nn
import torch.nn.functional as F

from FP_layers import FP_Conv, FP_Linear


class ResNet_Block(nn.Module):
    def __init__(self, in_chs, out_chs, strides, Nbits=None, symmetric=False):
        super().__init__()
        self.conv1 = nn.Sequential(
            FP_Conv(in_channels=in_chs, out_channels=out_chs, stride=strides, padding=1,
                    kernel_size=3, bias=False, Nbits=Nbits, symmetric=symmetric),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(),
        )
        self.conv2 = nn.Sequential(
            FP_Conv(in_channels=out_chs, out_channels=out_chs, stride=1, padding=1,
                    kernel_size=3, bias=False, Nbits=Nbits, symmetric=symmetric),
            nn.BatchNorm2d(out_chs),
        )
        if in_chs != out_chs:
            self.id_mapping = nn.Sequential(
                FP_Conv(in_channels=in_chs, out_channels=out_chs, stride=strides, padding=0,
                        kernel_size=1, bias=False, Nbits=Nbits, symmetric=symmetric),
                nn.BatchNorm2d(out_chs),
            )
        else:
            self.id_mapping = None
        self.final_activation = nn.ReLU()

    def forward(self, x):
        out = self.conv1(x)
        out = self.conv2(out)
        x_ = self.id_mapping(x) if self.id_mapping is not None else x
        return self.final_activation(x_ + out)


class ResNetCIFAR(nn.Module):
    def __init__(self, num_layers=20, Nbits=None, symmetric=False):
        super().__init__()
        self.num_layers = num_layers
        self.head_conv = nn.Sequential(
            FP_Conv(in_channels=3, out_channels=16, stride=1, padding=1, kernel_size=3,
                    bias=False, Nbits=None, symmetric=symmetric),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        num_layers_per_stage = (num_layers - 2) // 6
        blocks = []
        for stage, chs in enumerate((16, 32, 64)):
            for i in range(num_layers_per_stage):
                in_chs = chs // 2 if (stage > 0 and i == 0) else chs
                strides = 2 if (stage > 0 and i == 0) else 1
                blocks.append(ResNet_Block(in_chs=in_chs, out_chs=chs, strides=strides,
                                           Nbits=Nbits, symmetric=symmetric))
        self.body_op = nn.Sequential(*blocks)
        self.final_fc = FP_Linear(64, 10, Nbits=None, symmetric=symmetric)

    def forward(self, x):
        out = self.head_conv(x)
        out = self.body_op(out)
        return self.final_fc(F.adaptive_avg_pool2d(out, 1).flatten(1))
