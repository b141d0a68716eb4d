"""Item baselines: makemore's Transformer and GRU trained on a list's items for a wall-time budget, scored per item.

Karpathy's makemore learns a list (names, words) item by item; these are its two strongest models written again
by us in plain PyTorch, with makemore's defaults (karpathy/makemore makemore.py, commit f61811b): ModelConfig
n_layer 4, n_head 4, n_embd 64, n_embd2 64; a pre-norm GPT-2 Transformer with learned positions, causal
self-attention, a 4x GELU (tanh) MLP and no dropout, block_size = the longest item + 1; its RNN with the GRU
cell written out (reset gate applied to the state before the candidate's linear map) from a learned start
state; AdamW lr 5e-4, weight decay 0.01 on every parameter, betas (0.9, 0.99), eps 1e-8; 32 items per step
drawn at random with replacement; seed 3407; an evaluation every 500 steps, keeping the best.

The protocol is charrnn's for a list learned as items (`charrnn eval` of such a run, `charrnn score`): each
item is read from a fresh start token (the newline character) and its end predicted (a final newline), so the
loss is the total nats over (characters + ends). The text is split as the panel splits it
(panel_texts.split: the first 90% trains, the last 10% is the test text); of the training items the last 10%
are held out to choose the best weights. Characters the training items lack are dropped from the test items
and counted (as charrnn eval does). Training, its evaluations included, runs for --minutes of wall time
counted from the process start, as charrnn's --time; then one last validation, and the best weights score
the test items. Prints JSON: the model, its parameters, steps, seconds (all of it), validation and test loss
in nats per character (characters and ends).

    python benchmarks/item_baselines.py /work/texts/words.txt --model transformer --minutes 10
    python benchmarks/item_baselines.py /work/texts/words.txt --model gru --minutes 10
    python benchmarks/item_baselines.py /work/texts/words.txt --model gru --minutes 0.1      # a smoke test
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the budget counts from here, before torch loads, as charrnn's --time does

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import panel_texts  # noqa: E402  (beside this file)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

IGNORE = -100  # a padding target the loss skips (cross_entropy's ignore_index)
VAL_FRACTION = 0.1  # the last training items, held out to choose the best weights
EVAL_ITEMS = 512  # items scored side by side when evaluating


@dataclass(frozen=True)
class ModelConfig:
    """makemore's ModelConfig and its defaults."""

    vocab_size: int
    block_size: int  # the longest sequence the Transformer reads: the start token and the longest item
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    n_embd2: int = 64  # the GRU's state


@dataclass(frozen=True)
class OptimizerSettings:
    """makemore's AdamW and batch."""

    lr: float = 5e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    batch_size: int = 32


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.projection = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time_steps, channels = x.shape
        heads = [
            part.view(batch, time_steps, self.n_head, channels // self.n_head).transpose(1, 2)
            for part in self.qkv(x).split(channels, dim=2)
        ]
        attended = F.scaled_dot_product_attention(*heads, is_causal=True)  # each position sees only the past
        return self.projection(attended.transpose(1, 2).reshape(batch, time_steps, channels))


class Block(nn.Module):
    """GPT-2's block: attention then an MLP, each on a layer-normed input and added back."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.attention_norm, self.mlp_norm = nn.LayerNorm(config.n_embd), nn.LayerNorm(config.n_embd)
        self.attention = CausalSelfAttention(config)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(approximate="tanh"),
            nn.Linear(4 * config.n_embd, config.n_embd),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embedding = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.Sequential(*[Block(config) for _ in range(config.n_layer)])
        self.final_norm = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.size(1), device=ids.device)
        x = self.token_embedding(ids) + self.position_embedding(positions)
        return self.head(self.final_norm(self.blocks(x)))


class GRUCell(nn.Module):
    """makemore's GRU cell: the reset gate scales the state before the candidate is computed from it."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        both = config.n_embd + config.n_embd2
        self.update_gate = nn.Linear(both, config.n_embd2)
        self.reset_gate = nn.Linear(both, config.n_embd2)
        self.candidate = nn.Linear(both, config.n_embd2)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        x_and_hidden = torch.cat([x, hidden], dim=1)
        reset = torch.sigmoid(self.reset_gate(x_and_hidden))
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * hidden], dim=1)))
        update = torch.sigmoid(self.update_gate(x_and_hidden))
        return (1 - update) * hidden + update * candidate


class GRU(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.start = nn.Parameter(torch.zeros(1, config.n_embd2))  # learned: where every item's reading begins
        self.embedding = nn.Embedding(config.vocab_size, config.n_embd)
        self.cell = GRUCell(config)
        self.head = nn.Linear(config.n_embd2, config.vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        hidden = self.start.expand(ids.size(0), -1)
        states = []
        for step in range(ids.size(1)):
            hidden = self.cell(x[:, step], hidden)
            states.append(hidden)
        return self.head(torch.stack(states, dim=1))


MODELS = {"transformer": Transformer, "gru": GRU}


@dataclass
class Items:
    """A list's items as ids: training, held out for choosing the best weights, test; and the test's unknowns."""

    train: list[torch.Tensor]
    val: list[torch.Tensor]
    test: list[torch.Tensor]
    test_oov: int
    vocab: str  # the training items' characters and the newline, sorted
    longest: int  # characters of the longest item of the text


def items_of(text: str) -> list[str]:
    return [line for line in text.split("\n") if line]  # an empty line is no item


def read_items(path: Path) -> Items:
    """The text's items split as the panel splits it, and the last training tenth held out."""
    train_text, test_text = panel_texts.split(path.read_bytes().decode("utf-8"))
    training, test = items_of(train_text), items_of(test_text)
    vocab = "".join(sorted(set("".join(training)) | {"\n"}))
    index = {char: i for i, char in enumerate(vocab)}

    def encoded(items: list[str]) -> list[torch.Tensor]:
        return [torch.tensor([index[c] for c in item if c in index], dtype=torch.long) for item in items]

    held_out = max(1, round(len(training) * VAL_FRACTION))
    test_oov = sum(c not in index for item in test for c in item)
    longest = max(map(len, training + test))
    return Items(encoded(training[:-held_out]), encoded(training[-held_out:]), encoded(test), test_oov, vocab, longest)


def batch(items: list[torch.Tensor], newline: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs newline + item and targets item + newline, side by side, padded to the longest."""
    width = max(len(ids) for ids in items) + 1
    inputs = torch.full((len(items), width), newline, dtype=torch.long)
    targets = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for row, ids in enumerate(items):
        inputs[row, 1 : len(ids) + 1] = ids
        targets[row, : len(ids)] = ids
        targets[row, len(ids)] = newline
    return inputs, targets


def item_loss(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    logits = model(ids)
    return F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction=reduction)


@torch.inference_mode()
def loss_per_char(model: nn.Module, items: list[torch.Tensor], newline: int, device: torch.device) -> tuple:
    """Nats per predicted character (the items' characters and their ends) over `items`; and that count."""
    model.eval()
    nats, count = 0.0, 0
    for start in range(0, len(items), EVAL_ITEMS):
        inputs, targets = batch(items[start : start + EVAL_ITEMS], newline)
        nats += item_loss(model, inputs.to(device), targets.to(device), reduction="sum").item()
        count += int((targets != IGNORE).sum())
    model.train()
    return nats / count, count


def train(model: nn.Module, items: Items, every: int, deadline: float, device: torch.device) -> tuple:
    """Train until the deadline, validating every `every` steps and at the end; the best weights, their
    validation loss, and the steps taken."""
    settings, newline = OptimizerSettings(), items.vocab.index("\n")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=settings.betas, eps=settings.eps
    )
    best_loss, best_weights, step = math.inf, None, 0
    while True:
        out_of_time = time.monotonic() >= deadline
        if out_of_time or (step > 0 and step % every == 0):
            val_loss, _ = loss_per_char(model, items.val, newline, device)
            if val_loss < best_loss:
                best_loss, best_weights = val_loss, {k: v.detach().clone() for k, v in model.state_dict().items()}
        if out_of_time:
            return best_weights, best_loss, step
        drawn = torch.randint(len(items.train), (settings.batch_size,)).tolist()  # with replacement, as makemore
        inputs, targets = batch([items.train[i] for i in drawn], newline)
        loss = item_loss(model, inputs.to(device), targets.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", type=Path, help="a list, one item a line (the panel's words.txt)")
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--minutes", type=float, required=True, help="wall time from the process start")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between validations (makemore's 500)")
    parser.add_argument("--seed", type=int, default=3407, help="makemore's")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    items, device = read_items(args.text), torch.device(args.device)
    config = ModelConfig(vocab_size=len(items.vocab), block_size=items.longest + 1)
    model = MODELS[args.model](config).to(device)
    best_weights, val_loss, steps = train(model, items, args.eval_every, STARTED + args.minutes * 60, device)
    model.load_state_dict(best_weights)
    test_loss, test_chars = loss_per_char(model, items.test, items.vocab.index("\n"), device)
    result = {
        "model": args.model,
        "text": str(args.text),
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": asdict(config),
        "optimizer": asdict(OptimizerSettings()),
        "steps": steps,
        "seconds": round(time.monotonic() - STARTED, 1),
        "items": {"train": len(items.train), "val": len(items.val), "test": len(items.test)},
        "val_loss": val_loss,
        "test_loss": test_loss,
        "test_bpc": test_loss / math.log(2),
        "test_chars": test_chars,  # characters and ends
        "test_oov": items.test_oov,
        "device": str(device),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
