"""Training helpers (the course's given file; the grader always uses this trusted copy).

``train(net, ...)`` trains from scratch, ``finetune(net, ...)`` finetunes and saves the best
model to ``quantized_net_after_finetune.pt``, ``test(net)`` prints and returns the test accuracy.
Data come from ``torchvision.datasets.CIFAR10`` under ``./data`` (in fast grading mode the grader
puts the fixture dataset in its place; see ``reference.data``). Optimizer: SGD with momentum
0.875 and weight decay ``reg``, as in the course.
"""

import time

import torch
import torch.nn as nn
import torch.optim as optim
import torchvision
import torchvision.transforms as transforms

device = "cuda" if torch.cuda.is_available() else "cpu"
DATA_ROOT = "./data"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def _trainloader(batch_size):
    transform_train = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])
    trainset = torchvision.datasets.CIFAR10(root=DATA_ROOT, train=True, download=True,
                                            transform=transform_train)
    return torch.utils.data.DataLoader(trainset, batch_size=batch_size, shuffle=True, num_workers=4)


def _testloader():
    transform_test = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    testset = torchvision.datasets.CIFAR10(root=DATA_ROOT, train=False, download=True,
                                           transform=transform_test)
    return torch.utils.data.DataLoader(testset, batch_size=100, shuffle=False, num_workers=4)


def _evaluate(net, testloader, criterion):
    net.eval()
    test_loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for inputs, targets in testloader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = net(inputs)
            test_loss += criterion(outputs, targets).item()
            correct += outputs.max(1)[1].eq(targets).sum().item()
            total += targets.size(0)
    return test_loss / max(len(testloader), 1), correct / max(total, 1)


def _run(net, epochs, batch_size, lr, reg, save_path=None, log_every_n=50):
    trainloader, testloader = _trainloader(batch_size), _testloader()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(net.parameters(), lr=lr, momentum=0.875, weight_decay=reg, nesterov=False)
    best_acc = 0.0
    for epoch in range(epochs):
        print("\nEpoch: %d" % epoch)
        net.train()
        start, train_loss, correct, total = time.time(), 0.0, 0, 0
        for batch_idx, (inputs, targets) in enumerate(trainloader):
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
            correct += outputs.max(1)[1].eq(targets).sum().item()
            total += targets.size(0)
            if (batch_idx + 1) % log_every_n == 0:
                rate = log_every_n * batch_size / (time.time() - start)
                print("[Step=%d]\tLoss=%.4f\tacc=%.4f\t%.1f examples/second"
                      % (batch_idx + 1, train_loss / (batch_idx + 1), correct / total, rate))
                start = time.time()
        val_loss, val_acc = _evaluate(net, testloader, criterion)
        print("Test Loss=%.4f, Test acc=%.4f" % (val_loss, val_acc))
        if save_path and val_acc > best_acc:
            best_acc = val_acc
            print("Saving...")
            torch.save(net.state_dict(), save_path)
    return best_acc


def train(net, epochs=100, batch_size=128, lr=0.01, reg=5e-4, log_every_n=50):
    """Train ``net`` from scratch; save the best model to ``net_before_pruning.pt``."""
    return _run(net, epochs, batch_size, lr, reg, "net_before_pruning.pt", log_every_n)


def finetune(net, epochs=100, batch_size=128, lr=0.01, reg=5e-4):
    """Finetune ``net``; save the best model to ``quantized_net_after_finetune.pt``."""
    return _run(net, epochs, batch_size, lr, reg, "quantized_net_after_finetune.pt")


def test(net):
    """Evaluate ``net`` on the test set; print and return the accuracy (a fraction)."""
    testloader = _testloader()
    criterion = nn.CrossEntropyLoss()
    test_loss, val_acc = _evaluate(net, testloader, criterion)
    print("Test Loss=%.4f, Test accuracy=%.4f" % (test_loss, val_acc))
    return val_acc
