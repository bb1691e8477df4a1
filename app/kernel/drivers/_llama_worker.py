"""One llama.cpp model in its own thread, bridged to the event loop.

A `llama_cpp.Llama` is not thread-safe and every call into it blocks for milliseconds to
seconds, so each loaded model gets one dedicated thread (a single-worker executor): the
event loop never waits on native code, and closing the model runs after whatever was
already queued. Jobs for the model wait in the worker's own run queue, the most urgent
first (`rank`: 0 for interactive callers, 1 normal, 2 background; arrival order within a
rank; a job that has waited `starvation_s` goes first whatever its rank).

Cancellation: `Llama.sample` is wrapped once per model; between two tokens it checks the
running job's cancel flag and raises `_Cancelled`, which unwinds llama-cpp-python's
generators from inside. That stops a job within one token, streaming or not, even when
llama-cpp-python is holding text back (UTF-8 repair, stop-string prefixes). The same
wrapper counts sampled tokens, which is how streams get their usage figures.

Preemption: the same wrapper is the token boundary where a generation may be paused. When
a job of a more urgent rank is queued while a generation runs, the wrapper, before sampling
the next token, saves what the paused generation needs and runs the urgent jobs itself,
nested, on the same thread (the paused generation's Python frames simply wait below them on
the stack); then it restores the state and samples the token it was about to sample. What
is saved (`_Saved`):

- the KV cache (`llama_state_get_data`: only the cells in use, 4 bytes per token, layer and
  KV dimension in f16, K and V) — or, when the states already held would exceed
  `state_budget`, nothing, and the tokens are evaluated again on resume (re-prefill: no
  memory, prompt-speed time);
- the token history (`input_ids[:n_tokens]`, which repeat penalties and logits processors read);
- the last position's logits (llama.cpp's state does not restore them, and the next token is
  sampled from them: copied back, the first token after a resume is exactly the one it would
  have been);
- the sampler chain of the generation (`Llama._sampler`: grammar state, penalty history, the
  seeded RNG), kept as the same object, so even seeded sampling continues as if never paused.

With greedy sampling the resumed output is identical, token for token, to an uninterrupted
run (tests/kernel/drivers/test_llamacpp_preemption.py). A paused job that is cancelled drops
its state at once and lets its caller go (its frames unwind when the urgent job is done); a
paused job never waits longer than `starvation_s` (it then resumes, and is not paused again).
Nesting is bounded: a job only pauses for a strictly more urgent rank, so at most two
generations are paused at once per model. A long prompt is evaluated in pieces of
`prefill_chunk` tokens (128 by default; `Llama.eval` is wrapped too): the
boundaries between them are pause points as well, so an urgent call waits for one piece,
not for a whole agent's context.
Llama-cpp-python's private attributes used here (`_sampler`, `_requires_eval`) are those
of the pinned version (0.3.x).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import gc
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from threading import Event
from typing import Any

_END = object()  # stream sentinel: the job is over
NORMAL_RANK = 1  # jobs of callers outside any scheduler program
_IDLE = 1 << 30  # `urgent_rank` with nothing queued
_LAST = 1 << 20  # closing the model: after every job queued before it, never aged
DEFAULT_STATE_BUDGET = 256 * 2**20  # bytes of KV state kept for paused generations, per model


class _Cancelled(Exception):
    """Raised inside the worker thread to unwind a generation the consumer gave up on."""


class WorkerClosedError(RuntimeError):
    """The model was unloaded between looking its worker up and submitting to it."""


class _Mailbox:
    """Worker thread → event loop hand-off that wakes the loop at most every `gap` seconds.

    A wake-up (self-pipe write and read, epoll, GIL hand-offs between the two threads)
    costs the two threads 0.1-0.3 ms of CPU together; on a small model that is a tenth
    of what a token costs to compute. So after waking the loop, the worker lets `gap`
    (10 ms, under a display frame) pass before it wakes it again: tokens made meanwhile
    wait in the deque and ride along with the next wake-up, i.e. at most one token
    later. Models slower than 10 ms a token (most real ones) wake the loop for every
    token, as before. The first item and urgent ones (the end, errors) always wake it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, gap: float = 0.010) -> None:
        self._loop = loop
        self._gap = gap
        self._items: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._wake_pending = False
        self._last_wake = -gap  # touched by the worker thread only

    def put(self, item: Any, *, urgent: bool = False, hold: bool = False) -> bool:
        """Worker thread. `hold`: another put follows at once, wake for both then.

        Returns False when the loop is closed.
        """
        self._items.append(item)  # before the flag check, so a pending wake-up sees it
        if hold or self._wake_pending:
            return True
        now = time.perf_counter()
        if not urgent and now - self._last_wake < self._gap:
            return True  # goes with the next wake-up, one token from now
        self._last_wake, self._wake_pending = now, True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:
            return False
        return True

    def _wake(self) -> None:
        self._wake_pending = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()


@dataclass
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class Preemption:
    """How a model's worker pauses generations for more urgent jobs (see the module)."""

    enabled: bool = True
    state_budget: int = DEFAULT_STATE_BUDGET  # above it, a paused generation is re-prefilled on resume
    starvation_s: float = 30.0  # no job waits (queued or paused) longer than this for more urgent ones
    # A prompt is evaluated in pieces this long, a pause point between each (0: the model's
    # n_batch, the pieces llama.cpp evaluates anyway). On a CPU each piece reads every weight
    # once: on the quiet development machine pieces of 128 cost +4% on a 256-token prompt
    # (64: +7%, 32: +19%), under load up to +75%.
    prefill_chunk: int = 128


@dataclass
class JobReport:
    """What one request did on the model: filled in by the worker thread."""

    prompt_tokens: int = 0
    sampled_tokens: int = 0  # includes an end-of-generation token, if one was sampled
    completion_tokens: int = 0
    cancelled: bool = False
    seconds: float = 0.0
    waited_seconds: float = 0.0  # from its submission until the model's thread took it up
    preempted: int = 0  # times it was paused for a more urgent job
    paused_seconds: float = 0.0
    resumed_by: list[str] = field(default_factory=list)  # per pause: "state" (KV restored) or "prefill"
    paused_at: list[int] = field(default_factory=list)  # per pause: the tokens in its context then
    state_bytes: int = 0  # the largest state saved for it
    save_seconds: float = 0.0  # time spent saving and restoring its state, all pauses
    restore_seconds: float = 0.0


@dataclass
class _Saved:
    """A paused generation's state (see the module docstring)."""

    n_tokens: int
    tokens: Any  # numpy int32 array
    logits: Any  # ctypes float array of the last position's logits, or None
    sampler: Any
    requires_eval: bool
    kv: Any  # ctypes byte array from llama_state_get_data, or None: re-prefill on resume
    size: int  # bytes held (KV + tokens + logits)


@dataclass(eq=False)
class _Job:
    cancel: Event = field(default_factory=Event)
    report: JobReport = field(default_factory=JobReport)
    last_token: int | None = None
    rank: int = NORMAL_RANK
    preemptible: bool = False  # a generation that may be paused between two tokens
    seq: int = 0
    queued: float = 0.0  # time.monotonic() at submission
    paused: bool = False  # guarded by the worker's lock
    saved: _Saved | None = None  # idem


@dataclass(eq=False)
class _Task:
    job: _Job
    work: Callable[[Any], Any]
    future: concurrent.futures.Future[Any]
    plain: bool = False  # run `work()` as is: no job accounting (closing the model)


@dataclass(frozen=True)
class WorkerActivity:
    """A snapshot for the socket and monitor: is the model serving, and what did it last do."""

    busy: bool  # a job is running or queued
    jobs_done: int
    last_job: JobReport | None
    paused: int = 0  # generations paused under a more urgent job now
    preemptions: int = 0  # pauses since the model was loaded
    saved_bytes: int = 0  # state held for paused generations now


class ModelWorker:
    """Owns one `Llama` and the only thread that ever touches it."""

    def __init__(self, name: str, path: str, llama_kwargs: dict[str, Any],
                 preemption: Preemption | None = None) -> None:
        self.name = name
        self.path = path
        self._llama_kwargs = llama_kwargs
        self.preemption = preemption or Preemption()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{name}"
        )
        self._llama: Any = None
        self._plain_eval: Callable[[Any], None] | None = None  # Llama.eval without the chunking
        self._job: _Job | None = None  # the job running now; touched by the worker thread only
        self._pending: set[concurrent.futures.Future[Any]] = set()
        # The run queue. Each task also puts one ticket (`_dispatch`) on the executor; a ticket
        # runs the most urgent task queued when it gets the thread, and finds nothing if a
        # paused generation already ran that task nested.
        self._lock = threading.Lock()
        self._queue: list[_Task] = []
        self._seq = itertools.count()
        self.urgent_rank = _IDLE  # the most urgent rank queued: what the sample hook compares with
        self._closed = False
        self.chat_format: str | None = None
        self.jobs_done = 0
        self.last_job: JobReport | None = None
        self.preemptions = 0
        self.paused = 0
        self.saved_bytes = 0  # guarded by the lock
        self.peak_saved_bytes = 0

    # ── lifecycle ──────────────────────────────────────────────────────────

    async def start(self) -> None:
        """Load the weights in the worker thread (seconds for big files)."""
        try:
            await asyncio.wrap_future(self._executor.submit(self._load))
        except BaseException:
            self._executor.shutdown(wait=False)
            self._closed = True
            raise

    async def close(self) -> None:
        """Free the model after the jobs already queued have finished; idempotent."""
        if self._closed:
            return
        self._closed = True
        freed = self._enqueue(_Task(_Job(rank=_LAST), lambda _llama: self._free(), concurrent.futures.Future(),
                                    plain=True))
        self._executor.shutdown(wait=False)
        await asyncio.shield(asyncio.wrap_future(freed))

    def activity(self) -> WorkerActivity:
        return WorkerActivity(busy=bool(self._pending), jobs_done=self.jobs_done, last_job=self.last_job,
                              paused=self.paused, preemptions=self.preemptions, saved_bytes=self.saved_bytes)

    # ── requests ───────────────────────────────────────────────────────────

    async def complete(self, call_kwargs: dict[str, Any], *, rank: int = NORMAL_RANK) -> dict[str, Any]:
        """`create_chat_completion(stream=False)`; cancelling the awaiting task stops generation."""
        result: dict[str, Any] = await self.call(
            lambda llama: llama.create_chat_completion(stream=False, **call_kwargs),
            rank=rank, preemptible=True,
        )
        return result

    async def call(self, work: Callable[[Any], Any], *, rank: int = NORMAL_RANK, preemptible: bool = False) -> Any:
        """Run `work(llama)` in the model's thread, after the jobs queued before it (and the
        more urgent ones). `preemptible`: a generation through `Llama.generate` that may pause."""
        job = self._job_for(rank, preemptible)
        future = self._submit(job, work)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            await self._stop(job, future)
            raise

    async def stream(self, call_kwargs: dict[str, Any], *, rank: int = NORMAL_RANK) -> AsyncIterator[dict[str, Any]]:
        """Chunks of `create_chat_completion(stream=True)` as the thread produces them.

        The last chunk (the one with a finish_reason) carries a "usage" dict. Closing this
        generator or cancelling its consumer stops generation and waits for the thread to
        let go of the model, so the model is free again when `aclose()` returns (a paused
        generation has let go of it already: its caller goes at once).
        """
        mailbox = _Mailbox(asyncio.get_running_loop())
        job = self._job_for(rank, True)

        def emit(item: Any, *, urgent: bool = False, hold: bool = False) -> None:  # → event loop
            if not mailbox.put(item, urgent=urgent, hold=hold):  # loop closed: nobody listens
                job.cancel.set()

        def produce(llama: Any) -> None:
            try:
                for chunk in llama.create_chat_completion(stream=True, **call_kwargs):
                    if job.cancel.is_set():
                        raise _Cancelled
                    choice = (chunk.get("choices") or [{}])[0]
                    last = bool(choice.get("finish_reason"))
                    if last:
                        self._settle(job)
                        chunk["usage"] = {
                            "prompt_tokens": job.report.prompt_tokens,
                            "completion_tokens": job.report.completion_tokens,
                            "total_tokens": job.report.prompt_tokens + job.report.completion_tokens,
                        }
                    # the role-only opening chunk comes right before the first token's
                    opening = not last and set(choice.get("delta") or {}) == {"role"}
                    emit(chunk, urgent=last, hold=opening)
            except _Cancelled:
                raise
            except Exception as exc:
                emit(_Failed(exc), urgent=True)
            finally:
                emit(_END, urgent=True)

        future = self._submit(job, produce)
        try:
            while True:
                item = await mailbox.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            await self._stop(job, future)

    # ── event-loop side helpers ────────────────────────────────────────────

    def _job_for(self, rank: int, preemptible: bool) -> _Job:
        return _Job(rank=rank, preemptible=preemptible and self.preemption.enabled)

    def _submit(self, job: _Job, work: Callable[[Any], Any]) -> concurrent.futures.Future[Any]:
        if self._closed:
            raise WorkerClosedError(self.name)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)  # set.discard is atomic under the GIL
        return self._enqueue(_Task(job, work, future))

    def _enqueue(self, task: _Task) -> concurrent.futures.Future[Any]:
        task.job.queued = time.monotonic()
        with self._lock:
            task.job.seq = next(self._seq)
            self._queue.append(task)
            self.urgent_rank = min(self.urgent_rank, task.job.rank)
        self._executor.submit(self._dispatch)
        return task.future

    async def _stop(self, job: _Job, future: concurrent.futures.Future[Any]) -> None:
        """Ask the job to stop and wait until the thread has let go of the model."""
        with self._lock:  # against the thread taking the job from the queue, or resuming it
            job.cancel.set()
            if future.cancel():  # still queued behind another request: it never runs
                self._queue = [t for t in self._queue if t.job is not job]
                self._reckon_urgency()
                return
            if job.paused:  # paused under a more urgent job: nothing of it touches the model now
                self._drop_state(job)
                return
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except Exception:  # the job's own failure was already reported (or nobody wants it)
            pass

    # ── worker-thread side ─────────────────────────────────────────────────

    def _dispatch(self) -> None:
        """One ticket: run the most urgent task queued (none if a paused job ran it already)."""
        task = self._next(None)
        if task is not None:
            self._execute(task)

    def _next(self, below: int | None) -> _Task | None:
        """Take the next task to run from the queue; with `below`, only one of a more urgent rank."""
        with self._lock:
            while True:
                now, best, best_key = time.monotonic(), None, None
                for task in self._queue:
                    rank = task.job.rank
                    if below is not None and rank >= below:
                        continue
                    aged = rank < _LAST and now - task.job.queued >= self.preemption.starvation_s
                    key = (-1 if aged else rank, task.job.seq)
                    if best_key is None or key < best_key:
                        best, best_key = task, key
                if best is None:
                    return None
                self._queue.remove(best)
                self._reckon_urgency()
                if best.future.set_running_or_notify_cancel():
                    return best

    def _reckon_urgency(self) -> None:  # under the lock
        self.urgent_rank = min((t.job.rank for t in self._queue), default=_IDLE)

    def _execute(self, task: _Task) -> None:
        try:
            result = task.work(self._llama) if task.plain else self._run(task.job, task.work)
        except BaseException as exc:
            task.future.set_exception(exc)
        else:
            task.future.set_result(result)

    def _run(self, job: _Job, work: Callable[[Any], Any]) -> Any:
        started = time.perf_counter()
        job.report.waited_seconds = time.monotonic() - job.queued
        outer, self._job = self._job, job  # outer: a generation paused under this job, if any
        try:
            if job.cancel.is_set():
                raise _Cancelled
            return work(self._llama)
        except _Cancelled:
            job.report.cancelled = True
            return None
        finally:
            self._job = outer
            self._settle(job)
            job.report.seconds = time.perf_counter() - started
            self.jobs_done += 1
            self.last_job = job.report

    def _settle(self, job: _Job) -> None:
        """Turn the sample counts into OpenAI's completion_tokens (an end token is not output)."""
        import llama_cpp

        ended = job.last_token is not None and llama_cpp.llama_vocab_is_eog(
            llama_cpp.llama_model_get_vocab(self._llama.model), job.last_token
        )
        job.report.completion_tokens = job.report.sampled_tokens - (1 if ended else 0)

    # ── preemption (worker thread) ─────────────────────────────────────────

    def _preempt(self, llama: Any, job: _Job, idx: int | None) -> None:
        """At a token boundary of `job` with a more urgent job queued: pause, run the urgent
        ones, resume. Raises `_Cancelled` if `job` was cancelled meanwhile."""
        if idx is not None and idx != llama.n_tokens - 1:
            return  # sampling inside a batch (draft models): not a boundary we can resume at
        # (idx None: between two pieces of a prompt; the logits saved are the last piece's)
        t0 = time.perf_counter()
        saved = self._save(llama)
        with self._lock:
            job.saved, job.paused = saved, True
            self.saved_bytes += saved.size
            self.peak_saved_bytes = max(self.peak_saved_bytes, self.saved_bytes)
        self.paused += 1
        self.preemptions += 1
        report = job.report
        report.preempted += 1
        report.paused_at.append(saved.n_tokens)
        report.state_bytes = max(report.state_bytes, saved.size)
        paused_at = time.perf_counter()
        report.save_seconds += paused_at - t0
        try:
            while time.perf_counter() - paused_at < self.preemption.starvation_s:
                task = self._next(job.rank)
                if task is None:
                    break
                self._execute(task)
            else:  # paused long enough: it resumes now, and is not paused again
                job.preemptible = False
        finally:
            self.paused -= 1
            with self._lock:
                kept, job.paused = job.saved, False
                self._drop_state(job)
            resumed = time.perf_counter()
            report.paused_seconds += resumed - paused_at
        if kept is None or job.cancel.is_set():
            raise _Cancelled  # its caller has gone: nothing to restore
        report.resumed_by.append(self._restore(llama, kept))
        report.restore_seconds += time.perf_counter() - resumed

    def _drop_state(self, job: _Job) -> None:  # under the lock
        if job.saved is not None:
            self.saved_bytes -= job.saved.size
            job.saved = None

    def _save(self, llama: Any) -> _Saved:
        import llama_cpp
        import numpy as np

        ctx, n, n_vocab = llama.ctx, llama.n_tokens, llama.n_vocab()
        tokens = np.array(llama.input_ids[:n], dtype=np.intc)
        logits = None
        row = llama_cpp.llama_get_logits_ith(ctx, -1)
        if row:
            logits = (ctypes.c_float * n_vocab)()
            ctypes.memmove(logits, row, n_vocab * ctypes.sizeof(ctypes.c_float))
        size = tokens.nbytes + (ctypes.sizeof(logits) if logits is not None else 0)
        kv = None
        kv_size = int(llama_cpp.llama_state_get_size(ctx))
        if self.saved_bytes + size + kv_size <= self.preemption.state_budget:
            kv = (ctypes.c_uint8 * kv_size)()
            written = int(llama_cpp.llama_state_get_data(ctx, kv, kv_size))
            if 0 < written <= kv_size:
                size += kv_size
            else:
                kv = None
        return _Saved(n, tokens, logits, llama._sampler, llama._requires_eval, kv, size)

    def _restore(self, llama: Any, saved: _Saved) -> str:
        """Put a paused generation's state back; "state" or "prefill", how it was done."""
        import llama_cpp

        ctx, n = llama.ctx, saved.n_tokens
        evaluate = self._plain_eval or llama.eval
        how = "state"
        if saved.kv is not None:
            if int(llama_cpp.llama_state_set_data(ctx, saved.kv, ctypes.sizeof(saved.kv))) <= 0:
                raise RuntimeError("llama.cpp could not restore a paused generation's KV cache")
            llama.input_ids[:n] = saved.tokens
            llama.n_tokens = n
        else:
            how = "prefill"
            llama.reset()
            if n:
                evaluate(saved.tokens.tolist())  # the last position's logits are computed again too
        row = llama_cpp.llama_get_logits_ith(ctx, -1) if saved.logits is not None and n else None
        if row:
            ctypes.memmove(row, saved.logits, ctypes.sizeof(saved.logits))
        elif how == "state" and n:  # no logits to put back: evaluate the last token again for them
            llama.n_tokens = n - 1
            evaluate([int(saved.tokens[-1])])
        llama._sampler = saved.sampler
        llama._requires_eval = saved.requires_eval
        return how

    # ── loading ────────────────────────────────────────────────────────────

    def _load(self) -> None:
        import llama_cpp

        llama = llama_cpp.Llama(model_path=self.path, verbose=False, **self._llama_kwargs)
        sample = llama.sample

        def counting_sample(*args: Any, **kwargs: Any) -> int:
            job = self._job
            if job is None:
                return sample(*args, **kwargs)
            if job.cancel.is_set():
                raise _Cancelled
            if job.preemptible and self.urgent_rank < job.rank:
                self._preempt(llama, job, kwargs.get("idx"))
            if job.report.sampled_tokens == 0:
                job.report.prompt_tokens = llama.n_tokens  # the whole prompt is evaluated by now
            token: int = sample(*args, **kwargs)
            job.report.sampled_tokens += 1
            job.last_token = token
            return token

        evaluate = llama.eval
        chunk = self.preemption.prefill_chunk or llama.n_batch

        def chunked_eval(tokens: Any) -> None:
            """A long prompt in pieces, with a boundary between each (cancel, preempt)."""
            job = self._job
            if job is None or not job.preemptible or len(tokens) <= chunk:
                return evaluate(tokens)
            tokens = list(tokens)
            for start in range(0, len(tokens), chunk):
                if job.cancel.is_set():
                    raise _Cancelled
                if job.preemptible and self.urgent_rank < job.rank:
                    self._preempt(llama, job, None)
                evaluate(tokens[start:start + chunk])
            return None

        # Llama.generate calls self.sample once per token: the one per-token hook that
        # sits in plain Python (a logits processor runs inside a C callback, where an
        # exception could not unwind the generation). It evaluates the prompt with
        # self.eval, which then runs in pieces when preemption is on (always the same
        # pieces, paused or not, so the numbers do not depend on whether it was paused).
        llama.sample = counting_sample
        if self.preemption.enabled:
            self._plain_eval = evaluate
            llama.eval = chunked_eval
        self._llama = llama
        self.chat_format = llama.chat_format

    def _free(self) -> None:
        llama, self._llama = self._llama, None
        if llama is None:
            return
        del llama.sample  # break the llama → wrapper → llama cycle so the arrays go at once
        if "eval" in vars(llama):
            del llama.eval
        self._plain_eval = None
        llama.close()  # frees weights, KV cache and context now, not whenever GC runs
        del llama
        gc.collect()
