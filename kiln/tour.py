"""The seed tour (`make demo`, `python -m kiln.tour`): the chapter "Compilers and Interpreters"
of Dive into Deep Learning, its MXNet program run with kiln in MXNet's place, then a model trained
on real data.

Each cell is the chapter's code with `mxnet` replaced by `kiln` in the import lines; the tour
prints the cell, then runs it. Shell lines (`!ls`, `!head`) run as small Python equivalents.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import sys
import textwrap
import time

CELLS = [
    ("Imperative programming", """
def add(a, b):
    return a + b

def fancy_func(a, b, c, d):
    e = add(a, b)
    f = add(c, d)
    g = add(e, f)
    return g

print(fancy_func(1, 2, 3, 4))
"""),
    ("Symbolic programming, simulated with Python", """
def add_():
    return '''
def add(a, b):
    return a + b
'''

def fancy_func_():
    return '''
def fancy_func(a, b, c, d):
    e = add(a, b)
    f = add(c, d)
    g = add(e, f)
    return g
'''

def evoke_():
    return add_() + fancy_func_() + 'print(fancy_func(1, 2, 3, 4))'

prog = evoke_()
print(prog)
y = compile(prog, '', 'exec')
exec(y)
"""),
    ("kiln's compiler does this for real: define, compile, run (kiln.jit)", """
import kiln
compiled = kiln.jit(fancy_func)
print(compiled.traced_graph(1, 2, 3, 4))   # what tracing recorded
print(compiled.graph(1, 2, 3, 4))          # after constant folding: the single constant 10
print(compiled(1, 2, 3, 4))
"""),
    ("Hybridizing the Sequential class", """
from d2l import kiln as d2l
from kiln import np, npx
from kiln.gluon import nn
npx.set_np()

# Factory for networks
def get_net():
    net = nn.HybridSequential()
    net.add(nn.Dense(256, activation='relu'),
            nn.Dense(128, activation='relu'),
            nn.Dense(2))
    net.initialize()
    return net

x = np.random.normal(size=(1, 512))
net = get_net()
print(net(x))
"""),
    ("hybridize(): the results are unchanged", """
net.hybridize()
print(net(x))
"""),
    ("Acceleration by hybridization", """
#@save
class Benchmark:
    \"\"\"For measuring running time.\"\"\"
    def __init__(self, description='Done'):
        self.description = description

    def __enter__(self):
        self.timer = d2l.Timer()
        return self

    def __exit__(self, *args):
        print(f'{self.description}: {self.timer.stop():.4f} sec')
"""),
    ("Now we can invoke the network twice, once with and once without hybridization", """
net = get_net()
with Benchmark('Without hybridization'):
    for i in range(1000): net(x)
    npx.waitall()

net.hybridize()
with Benchmark('With hybridization'):
    for i in range(1000): net(x)
    npx.waitall()
"""),
    ("Serialization", """
net.export('my_mlp')
!ls -lh my_mlp*
"""),
    ("The model description", """
!head my_mlp-symbol.json
"""),
    ("HybridBlock with hybrid_forward(self, F, x)", """
class HybridNet(nn.HybridBlock):
    def __init__(self, **kwargs):
        super(HybridNet, self).__init__(**kwargs)
        self.hidden = nn.Dense(4)
        self.output = nn.Dense(2)

    def hybrid_forward(self, F, x):
        print('module F: ', F)
        print('value  x: ', x)
        x = F.npx.relu(self.hidden(x))
        print('result  : ', x)
        return self.output(x)
"""),
    ("Eagerly, F is the array module and x an array", """
net = HybridNet()
net.initialize()
x = np.random.normal(size=(1, 3))
net(x)
"""),
    ("After hybridize(), F is the symbol module and x a symbol (this call traces)", """
net.hybridize()
net(x)
"""),
    ("Called again, the compiled graph runs: no prints", """
net(x)
"""),
    ("Exercise 1: x.asnumpy() in hybrid_forward", """
class AsNumpyNet(HybridNet):
    def hybrid_forward(self, F, x):
        x.asnumpy()
        return super().hybrid_forward(F, x)

bad = AsNumpyNet()
bad.initialize()
bad.hybridize()
try:
    bad(x)
except Exception as e:
    print(type(e).__name__ + ':', e)
"""),
    ("Exercise 2: Python control flow in hybrid_forward", """
class ControlFlowNet(nn.HybridBlock):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(2)

    def hybrid_forward(self, F, x):
        if x.shape[0] > 1:          # on a shape: fine, the trace specializes on it
            x = x * 2
        for _ in range(3):          # a fixed-range for loop: unrolled into the graph
            x = F.npx.relu(x) + 1
        if x.sum() > 0:             # on a value: unknown while tracing
            x = -x
        return self.dense(x)

cf = ControlFlowNet()
cf.initialize()
cf(x)                               # eagerly every branch works
cf.hybridize()
try:
    cf(x)
except Exception as e:
    print(type(e).__name__ + ':', e)
"""),
    ("The value-dependent branch, written with a symbolic control-flow operator", """
class CondNet(nn.HybridBlock):
    def __init__(self):
        super().__init__()
        self.dense = nn.Dense(2)

    def hybrid_forward(self, F, x):
        # one graph node holding both branches; the branch is chosen when the graph runs
        x = F.npx.cond(x.sum() > 0, lambda x: -x, lambda x: x, [x])
        return self.dense(x)

cond_net = CondNet()
cond_net.initialize()
eager = cond_net(x)
cond_net.hybridize()
print(eager, cond_net(x))
"""),
]


def _shell(command: str) -> None:
    """`ls -lh <glob>` and `head <file>` as the chapter uses them, in portable Python."""
    parts = command.split()
    if parts[0] == "ls":
        pattern = parts[-1]
        for name in sorted(fnmatch.filter(os.listdir("."), pattern)):
            size = os.path.getsize(name)
            human = f"{size / 1024:.0f}K" if size >= 1024 else f"{size}"
            stamp = time.strftime("%b %d %H:%M", time.localtime(os.path.getmtime(name)))
            print(f"-rw-r--r-- 1 {human:>6} {stamp} {name}")
    elif parts[0] == "head":
        with open(parts[-1], encoding="utf-8") as f:
            for _ in range(10):
                line = f.readline()
                if not line:
                    break
                print(line, end="")
        print()
    else:
        raise ValueError(f"the tour runs only ls and head, not {command!r}")


def _translate(code: str) -> str:
    lines = []
    for line in code.splitlines():
        stripped = line.strip()
        if stripped.startswith("!"):
            indent = line[:len(line) - len(line.lstrip())]
            lines.append(f"{indent}_shell({stripped[1:]!r})")
        else:
            lines.append(line)
    return "\n".join(lines)


def run_cells(cells=CELLS, namespace: dict | None = None, echo: bool = True) -> dict:
    """Run the chapter's cells in one namespace, printing each before its output."""
    ns = namespace if namespace is not None else {"__name__": "__tour__", "_shell": _shell}
    ns.setdefault("_shell", _shell)
    for title, code in cells:
        code = textwrap.dedent(code).strip("\n")
        if echo:
            print(f"\n## {title}\n" + textwrap.indent(code, ">>> ", lambda _: True) + "\n")
        result = _run(code, ns)
        if result is not None and echo:
            print(repr(result))
    return ns


def _run(code: str, ns: dict):
    """Execute a cell; like a notebook, show the value of a final bare expression."""
    import ast

    tree = ast.parse(_translate(code))
    last = tree.body[-1] if tree.body else None
    if isinstance(last, ast.Expr):
        tree.body = tree.body[:-1]
        exec(compile(tree, "<tour>", "exec"), ns)
        return eval(compile(ast.Expression(last.value), "<tour>", "eval"), ns)
    exec(compile(tree, "<tour>", "exec"), ns)
    return None


def train_on_digits(epochs: int = 10) -> float:
    """Train an MLP on scikit-learn's handwritten digits with a progress display; returns test
    accuracy."""
    from kiln import autograd, gluon, init
    from kiln.gluon import nn
    from kiln.gluon.data.datasets import load_digits

    train, test = load_digits()
    train_loader = gluon.data.DataLoader(train, batch_size=64, shuffle=True)
    test_loader = gluon.data.DataLoader(test, batch_size=256)
    net = nn.HybridSequential()
    net.add(nn.Dense(128, activation="relu"), nn.Dense(64, activation="relu"), nn.Dense(10))
    net.initialize(init.Xavier())
    net.hybridize()
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": 3e-3})
    print(f"\n## Training an MLP on handwritten digits ({len(train)} train / {len(test)} test "
          "images, 8x8)\n")
    accuracy = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        total, count = 0.0, 0
        for i, (X, y) in enumerate(train_loader):
            with autograd.record():
                loss = loss_fn(net(X), y)
            loss.backward()
            trainer.step(X.shape[0])
            total += float(loss.sum())
            count += X.shape[0]
            _progress(epoch, epochs, i + 1, len(train_loader), total / count)
        correct = sum(float((net(X).argmax(axis=1) == y.astype("int64")).sum())
                      for X, y in test_loader)
        accuracy = correct / len(test)
        print(f"\repoch {epoch + 1:2d}/{epochs}  loss {total / count:.4f}  "
              f"test accuracy {accuracy:.3f}  ({time.perf_counter() - start:.2f} s)" + " " * 12)
    return accuracy


def _progress(epoch: int, epochs: int, step: int, steps: int, loss: float) -> None:
    width = 30
    done = int(width * step / steps)
    bar = "#" * done + "." * (width - done)
    sys.stdout.write(f"\repoch {epoch + 1:2d}/{epochs} [{bar}] loss {loss:.4f}")
    sys.stdout.flush()


def main() -> None:
    print("kiln tour: the chapter 'Compilers and Interpreters' with kiln in place of MXNet")
    with contextlib.suppress(KeyboardInterrupt):
        run_cells()
        try:
            train_on_digits()
        except ImportError as e:
            print(f"\n(skipping the training demo: {e})")


if __name__ == "__main__":
    main()
