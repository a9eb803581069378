# %% [markdown]
# # {{TITLE}} -- Labs 2 and 3
#
# Lab 2 prunes a pretrained ResNet-20, Lab 3 quantizes it to fixed point. Fill in every
# `raise NotImplementedError` (and `FP_layers.py` for Lab 3), run the notebook top to bottom and
# hand in this notebook with `FP_layers.py`. `resnet20.py` and `train_util.py` are given: the
# grader uses its own copies, so changes to them are ignored.
#
# Check your work at any time with `hw4grade check .` (public tests only).

# %%
import time

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
import torchvision
import torchvision.transforms as transforms

from FP_layers import *
from resnet20 import ResNetCIFAR
from train_util import finetune, test, train

device = "cuda" if torch.cuda.is_available() else "cpu"

# %% [markdown]
# ## Lab 2 (a): evaluate the pretrained model ({{PTS_lab2.a}} pts)

# %%
net = ResNetCIFAR(num_layers=20)
net = net.to(device)
net.load_state_dict(torch.load("pretrained_model.pt", map_location=device))
test(net)

# %% [markdown]
# ## Lab 2 (b): prune each layer by percentage ({{PTS_lab2.b}} pts)
#
# `q` is a percent (0-100): prune the `q`% of the weights with the smallest magnitude, using
# `numpy.percentile` of `|w|` as the threshold. Prune in place; leave the bias alone.

# %% include: lab2 prune_by_percentage

# %%
net.load_state_dict(torch.load("pretrained_model.pt", map_location=device))
for name, layer in net.named_modules():
    if (isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear)) and "id_mapping" not in name:
        prune_by_percentage(layer, q=Q)
        np_weight = layer.weight.data.cpu().numpy()
        print("Sparsity of " + name + ": " + str(np.sum(np_weight == 0) / np_weight.size))
test(net)

# %% [markdown]
# ## Lab 2 (c): finetune the pruned model, keeping pruned weights at zero ({{PTS_lab2.c}} pts)

# %% include: lab2 finetune_after_prune

# %%
# Training setup, do not change.
batch_size = BATCH_SIZE
lr = FINETUNE_LR
reg = REG

transform_train = transforms.Compose([
    transforms.RandomCrop(32, padding=4),
    transforms.RandomHorizontalFlip(),
    transforms.ToTensor(),
    transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
])
trainset = torchvision.datasets.CIFAR10(root="./data", train=True, download=True, transform=transform_train)
trainloader = torch.utils.data.DataLoader(trainset, batch_size=batch_size, shuffle=True, num_workers=2)
criterion = nn.CrossEntropyLoss()

# %%
# Get the pruned model, then finetune it.
net.load_state_dict(torch.load("pretrained_model.pt", map_location=device))
for name, layer in net.named_modules():
    if (isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear)) and "id_mapping" not in name:
        prune_by_percentage(layer, q=Q)
optimizer = optim.SGD(net.parameters(), lr=lr, momentum=0.875, weight_decay=reg, nesterov=False)
best_acc = 0.0
for epoch in range(FINETUNE_EPOCHS):
    print("\nEpoch: %d" % epoch)
    net.train()
    finetune_after_prune(net, trainloader, criterion, optimizer)
    val_acc = test(net)
    if val_acc > best_acc:
        best_acc = val_acc
        print("Saving...")
        torch.save(net.state_dict(), "net_after_finetune.pt")

# %% [markdown]
# Sparsity check: load `net_after_finetune.pt` and print the sparsity of every pruned layer as
# `Sparsity of <name>: <fraction>`, then the total sparsity, then its test accuracy.

# %%
net.load_state_dict(torch.load("net_after_finetune.pt", map_location=device))
# BEGIN SOLUTION
# TODO: for every pruned layer print "Sparsity of <name>: <fraction of zeros>", then
# TODO: "Total sparsity: <fraction>" over all of them.
zeros_all, total_all = 0, 0
for name, layer in net.named_modules():
    if (isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear)) and "id_mapping" not in name:
        np_weight = layer.weight.data.cpu().numpy()
        zeros, total = int(np.sum(np_weight == 0)), np_weight.size
        zeros_all, total_all = zeros_all + zeros, total_all + total
        print("Sparsity of " + name + ": " + str(zeros / total))
print("Total sparsity: " + str(zeros_all / total_all))
# END SOLUTION
test(net)

# %% [markdown]
# ## Lab 2 (d): iterative pruning ({{PTS_lab2.d}} pts)
#
# Before each of the first ITER_PRUNE_EPOCHS epochs prune every layer a further ITER_STEP%:
# to ITER_STEP% before the first epoch, and so on up to Q% before the last of them. Then
# finetune ITER_FIXED_EPOCHS more epochs with the mask fixed.

# %%
net.load_state_dict(torch.load("pretrained_model.pt", map_location=device))
optimizer = optim.SGD(net.parameters(), lr=lr, momentum=0.875, weight_decay=reg, nesterov=False)
best_acc = 0.0
for epoch in range(ITER_PRUNE_EPOCHS + ITER_FIXED_EPOCHS):
    print("\nEpoch: %d" % epoch)
    net.train()
    if epoch < ITER_PRUNE_EPOCHS:
        for name, layer in net.named_modules():
            if (isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear)) and "id_mapping" not in name:
                # BEGIN SOLUTION
                # TODO: the percent to prune to before this epoch: ITER_STEP% more every epoch.
                q = (epoch + 1) * ITER_STEP
                # END SOLUTION
                prune_by_percentage(layer, q=q)
    if epoch < ITER_PRUNE_EPOCHS - 1:
        finetune_after_prune(net, trainloader, criterion, optimizer, prune=False)
    else:
        finetune_after_prune(net, trainloader, criterion, optimizer)
    val_acc = test(net)
    if epoch >= ITER_PRUNE_EPOCHS and val_acc > best_acc:
        best_acc = val_acc
        print("Saving...")
        torch.save(net.state_dict(), "net_after_iterative_prune.pt")

# %%
net.load_state_dict(torch.load("net_after_iterative_prune.pt", map_location=device))
for name, layer in net.named_modules():
    if (isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear)) and "id_mapping" not in name:
        np_weight = layer.weight.data.cpu().numpy()
        print("Sparsity of " + name + ": " + str(np.sum(np_weight == 0) / np_weight.size))
test(net)

# %% [markdown]
# ## Lab 2 (e): global pruning ({{PTS_lab2.e}} pts)
#
# One threshold for all prunable layers: the Q-th percentile of all their weights' magnitudes.

# %% include: lab2 global_prune_by_percentage

# %%
net.load_state_dict(torch.load("pretrained_model.pt", map_location=device))
optimizer = optim.SGD(net.parameters(), lr=lr, momentum=0.875, weight_decay=reg, nesterov=False)
best_acc = 0.0
for epoch in range(ITER_PRUNE_EPOCHS + ITER_FIXED_EPOCHS):
    print("\nEpoch: %d" % epoch)
    net.train()
    if epoch < ITER_PRUNE_EPOCHS:
        q = (epoch + 1) * ITER_STEP
        global_prune_by_percentage(net, q=q)
    if epoch < ITER_PRUNE_EPOCHS - 1:
        finetune_after_prune(net, trainloader, criterion, optimizer, prune=False)
    else:
        finetune_after_prune(net, trainloader, criterion, optimizer)
    val_acc = test(net)
    if epoch >= ITER_PRUNE_EPOCHS and val_acc > best_acc:
        best_acc = val_acc
        print("Saving...")
        torch.save(net.state_dict(), "net_after_global_iterative_prune.pt")

# %%
net.load_state_dict(torch.load("net_after_global_iterative_prune.pt", map_location=device))
zeros_all, total_all = 0, 0
for name, layer in net.named_modules():
    if (isinstance(layer, nn.Conv2d) or isinstance(layer, nn.Linear)) and "id_mapping" not in name:
        np_weight = layer.weight.data.cpu().numpy()
        zeros_all, total_all = zeros_all + np.sum(np_weight == 0), total_all + np_weight.size
        print("Sparsity of " + name + ": " + str(np.sum(np_weight == 0) / np_weight.size))
print("Total sparsity: " + str(zeros_all / total_all))
test(net)

# %% [markdown]
# ## Lab 3 (a): fixed-point quantization with an STE ({{PTS_lab3.a}} pts)
#
# Implement `STE.forward` and `STE.backward` in `FP_layers.py` (asymmetric part first).
#
# ## Lab 3 (b): accuracy of the quantized model at BITS bits ({{PTS_lab3.b}} pts)

# %%
for Nbits in BITS:
    net = ResNetCIFAR(num_layers=20, Nbits=Nbits).to(device)
    net.load_state_dict(torch.load("pretrained_model.pt", map_location=device))
    print("Nbits = %d" % Nbits)
    test(net)

# %% [markdown]
# ## Lab 3 (c): finetune the quantized model at FINETUNE_BITS bits ({{PTS_lab3.c}} pts)

# %%
for Nbits in FINETUNE_BITS:
    net = ResNetCIFAR(num_layers=20, Nbits=Nbits).to(device)
    net.load_state_dict(torch.load("pretrained_model.pt", map_location=device))
    print("Nbits = %d before finetuning" % Nbits)
    test(net)
    finetune(net, epochs=Q_FINETUNE_EPOCHS, batch_size=batch_size, lr=lr, reg=reg)
    net.load_state_dict(torch.load("quantized_net_after_finetune.pt", map_location=device))
    print("Nbits = %d after finetuning" % Nbits)
    test(net)

# %% [markdown]
# ## Lab 3 (d): quantize the Q%-pruned model ({{PTS_lab3.d}} pts)

# %%
for Nbits in PRUNED_BITS:
    net = ResNetCIFAR(num_layers=20, Nbits=Nbits).to(device)
    net.load_state_dict(torch.load("net_after_finetune.pt", map_location=device))
    print("Nbits = %d, pruned model" % Nbits)
    test(net)

# %% [markdown]
# ## Lab 3 (e): symmetric quantization ({{PTS_lab3.e}} pts)
#
# Implement the `symmetric=True` branch of `STE.forward`, then evaluate at SYMMETRIC_BITS bits.

# %%
for Nbits in SYMMETRIC_BITS:
    net = ResNetCIFAR(num_layers=20, Nbits=Nbits, symmetric=True).to(device)
    net.load_state_dict(torch.load("pretrained_model.pt", map_location=device))
    print("Nbits = %d, symmetric" % Nbits)
    test(net)
