"""Context switch: pausing a generation on the in-process llama.cpp driver and resuming it.

    cd /work/main && .venv/bin/python -m bench.context_switch [--sizes 512 2048] [--runs 5]

A generation preempted at a token boundary (app/kernel/drivers/_llama_worker.py) is resumed
either from its saved state (the KV cache of the cells in use, the token history, the last
position's logits) or, when the states held would pass the budget, by evaluating its tokens
again (re-prefill). For each context size this times, on a ~0.5B-shaped model
(bench/_small_model.py):

- save + restore: the worker's own `_save` and `_restore`, with another context evaluated
  in between (as the urgent call would), and the state's size;
- re-prefill: the worker's `_restore` of a tokens-only state, i.e. the whole context evaluated
  again (what a scheduler without saved states, or one past its budget, pays);
- the same context evaluated in pieces of `--piece` tokens (128, the driver's default: a
  prompt can be paused between two pieces): what those pause points cost;
- for reference, llama-cpp-python's `Llama.save_state()` / `load_state()`, which also copy
  the `scores` array (n_batch rows of n_vocab floats) whatever the context.

Each resume is checked: the next token sampled greedily is the one sampled before the switch.
Medians of `--runs` (re-prefill: `--prefill-runs`) in one run; the machine is shared, so
figures are noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from app.kernel.drivers._llama_worker import ModelWorker
from bench._small_model import DESCRIPTION, small_model

WORDS = ("the quick brown fox jumps over the lazy dog while people write long stories about the world "
         "and the model reads them all ").split()  # fmt: skip


def context(llama, n: int, offset: int = 0) -> list[int]:
    """`n` tokens of text (BOS first)."""
    text = " ".join(WORDS[(i + offset) % len(WORDS)] for i in range(n * 2))
    tokens = llama.tokenize(text.encode())[:n]
    assert len(tokens) == n, f"{len(tokens)} tokens, not {n}"
    return tokens


def greedy_next(llama) -> int:
    import llama_cpp

    row = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
    return int(np.argmax(np.ctypeslib.as_array(row, shape=(llama.n_vocab(),))))


def disturb(llama) -> None:
    """What the urgent call does meanwhile: a context of its own in the cache."""
    llama.reset()
    llama.eval(context(llama, 48, offset=7))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--prefill-runs", type=int, default=3)
    parser.add_argument("--piece", type=int, default=128)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    args = parser.parse_args()

    import llama_cpp

    path = small_model()
    n_ctx = max(args.sizes) + 64
    print(f"model: {DESCRIPTION}, {path.stat().st_size / 1e6:.0f} MB; n_ctx {n_ctx}, {args.threads} threads, "
          f"llama-cpp-python {llama_cpp.__version__}; medians of {args.runs} (re-prefill: {args.prefill_runs})")
    llama = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=args.threads, verbose=False)
    worker = ModelWorker("bench", str(path), {})  # its thread never starts: only _save/_restore are used
    kv_budget = worker.preemption.state_budget
    rows = []
    try:
        for n in args.sizes:
            tokens = context(llama, n)
            llama.reset()
            started = time.perf_counter()
            llama.eval(tokens)
            cold = time.perf_counter() - started
            expected = greedy_next(llama)

            saves, restores, size = [], [], 0
            for _ in range(args.runs):
                started = time.perf_counter()
                saved = worker._save(llama)
                saves.append(time.perf_counter() - started)
                size = saved.size
                assert saved.kv is not None, "the state went over the budget"
                disturb(llama)
                started = time.perf_counter()
                assert worker._restore(llama, saved) == "state"
                restores.append(time.perf_counter() - started)
                assert llama.n_tokens == n and greedy_next(llama) == expected, "restored state differs"
                del saved

            prefills, tokens_only = [], 0
            worker.preemption = type(worker.preemption)(state_budget=0)
            for _ in range(args.prefill_runs):
                saved = worker._save(llama)
                tokens_only = saved.size
                assert saved.kv is None
                disturb(llama)
                started = time.perf_counter()
                assert worker._restore(llama, saved) == "prefill"
                prefills.append(time.perf_counter() - started)
                assert llama.n_tokens == n and greedy_next(llama) == expected, "re-prefilled context differs"
            worker.preemption = type(worker.preemption)(state_budget=kv_budget)

            pieces, same = [], True
            chunk = args.piece
            for _ in range(args.prefill_runs):
                disturb(llama)
                llama.reset()
                started = time.perf_counter()
                for i in range(0, n, chunk):
                    llama.eval(tokens[i:i + chunk])
                pieces.append(time.perf_counter() - started)
                same = same and greedy_next(llama) == expected  # numerically a hair apart: may differ

            # llama-cpp-python's own: one run (it copies hundreds of MB of scores)
            started = time.perf_counter()
            state = llama.save_state()
            lcp_save = time.perf_counter() - started
            lcp_bytes = state.llama_state_size + state.scores.nbytes + state.input_ids.nbytes
            disturb(llama)
            started = time.perf_counter()
            llama.load_state(state)
            lcp_load = time.perf_counter() - started
            del state

            switch = statistics.median(saves) + statistics.median(restores)
            prefill = statistics.median(prefills)
            rows.append((n, switch, prefill))
            print(f"\n{n} tokens (first prefill {cold * 1e3:.0f} ms)")
            print(f"  save + restore   {switch * 1e3:8.1f} ms  (save {statistics.median(saves) * 1e3:.1f}, "
                  f"restore {statistics.median(restores) * 1e3:.1f}; min {min(saves) * 1e3 + min(restores) * 1e3:.1f})"
                  f"  state {size / 2**20:.1f} MiB")
            print(f"  re-prefill       {prefill * 1e3:8.1f} ms  (min {min(prefills) * 1e3:.1f}, "
                  f"max {max(prefills) * 1e3:.1f})  state {tokens_only / 2**10:.0f} KiB (tokens + logits)")
            print(f"  in pieces of {chunk}  {statistics.median(pieces) * 1e3:8.1f} ms  "
                  f"= {statistics.median(pieces) / prefill:.2f}x the prefill in one batch; "
                  f"next token {'the same' if same else 'DIFFERENT'}")
            print(f"  llama-cpp-python save_state {lcp_save * 1e3:.1f} ms + load_state {lcp_load * 1e3:.1f} ms, "
                  f"{lcp_bytes / 2**20:.0f} MiB")
    finally:
        llama.close()

    print("\nsummary (medians):")
    for n, switch, prefill in rows:
        print(f"  {n:5d} tokens: save+restore {switch * 1e3:.1f} ms vs re-prefill {prefill * 1e3:.0f} ms "
              f"= {prefill / switch:.0f}x faster")


if __name__ == "__main__":
    main()
