"""One llama.cpp model in its own thread, bridged to the event loop.

A `llama_cpp.Llama` is not thread-safe and every call into it blocks for milliseconds to
seconds, so each loaded model gets one dedicated thread (a single-worker executor): jobs
for the same model queue up in order, the event loop never waits on native code, and
closing the model runs after whatever was already queued.

Cancellation: `Llama.sample` is wrapped once per model; between two tokens it checks the
running job's cancel flag and raises `_Cancelled`, which unwinds llama-cpp-python's
generators from inside. That stops a job within one token, streaming or not, even when
llama-cpp-python is holding text back (UTF-8 repair, stop-string prefixes). The same
wrapper counts sampled tokens, which is how streams get their usage figures.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from threading import Event
from typing import Any

_END = object()  # stream sentinel: the job is over


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


@dataclass
class JobReport:
    """What one request did on the model: filled in by the worker thread."""

    prompt_tokens: int = 0
    sampled_tokens: int = 0  # includes an end-of-generation token, if one was sampled
    completion_tokens: int = 0
    cancelled: bool = False
    seconds: float = 0.0


@dataclass
class _Job:
    cancel: Event = field(default_factory=Event)
    report: JobReport = field(default_factory=JobReport)
    last_token: int | None = None


@dataclass(frozen=True)
class WorkerActivity:
    """A snapshot for the socket and monitor: is the model serving, and what did it last do."""

    busy: bool  # a job is running or queued
    jobs_done: int
    last_job: JobReport | None


class ModelWorker:
    """Owns one `Llama` and the only thread that ever touches it."""

    def __init__(self, name: str, path: str, llama_kwargs: dict[str, Any]) -> None:
        self.name = name
        self.path = path
        self._llama_kwargs = llama_kwargs
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{name}"
        )
        self._llama: Any = None
        self._job: _Job | None = None  # the job running now; touched by the worker thread only
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._closed = False
        self.chat_format: str | None = None
        self.jobs_done = 0
        self.last_job: JobReport | None = None

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
        freed = self._executor.submit(self._free)
        self._executor.shutdown(wait=False)
        await asyncio.shield(asyncio.wrap_future(freed))

    def activity(self) -> WorkerActivity:
        return WorkerActivity(busy=bool(self._pending), jobs_done=self.jobs_done, last_job=self.last_job)

    # ── requests ───────────────────────────────────────────────────────────

    async def complete(self, call_kwargs: dict[str, Any]) -> dict[str, Any]:
        """`create_chat_completion(stream=False)`; cancelling the awaiting task stops generation."""
        result: dict[str, Any] = await self.call(
            lambda llama: llama.create_chat_completion(stream=False, **call_kwargs)
        )
        return result

    async def call(self, work: Callable[[Any], Any]) -> Any:
        """Run `work(llama)` in the model's thread, after the jobs queued before it."""
        job = _Job()
        future = self._submit(job, work)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            await self._stop(job, future)
            raise

    async def stream(self, call_kwargs: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Chunks of `create_chat_completion(stream=True)` as the thread produces them.

        The last chunk (the one with a finish_reason) carries a "usage" dict. Closing this
        generator or cancelling its consumer stops generation and waits for the thread to
        let go of the model, so the model is free again when `aclose()` returns.
        """
        mailbox = _Mailbox(asyncio.get_running_loop())
        job = _Job()

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

    def _submit(self, job: _Job, work: Callable[[Any], Any]) -> concurrent.futures.Future[Any]:
        if self._closed:
            raise WorkerClosedError(self.name)
        future = self._executor.submit(self._run, job, work)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)  # set.discard is atomic under the GIL
        return future

    @staticmethod
    async def _stop(job: _Job, future: concurrent.futures.Future[Any]) -> None:
        """Ask the job to stop and wait until the thread has let go of the model."""
        job.cancel.set()
        if future.cancel():  # still queued behind another request: it never runs
            return
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except Exception:  # the job's own failure was already reported (or nobody wants it)
            pass

    # ── worker-thread side ─────────────────────────────────────────────────

    def _run(self, job: _Job, work: Callable[[Any], Any]) -> Any:
        started = time.perf_counter()
        self._job = job
        try:
            if job.cancel.is_set():
                raise _Cancelled
            return work(self._llama)
        except _Cancelled:
            job.report.cancelled = True
            return None
        finally:
            self._job = None
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
            if job.report.sampled_tokens == 0:
                job.report.prompt_tokens = llama.n_tokens  # the whole prompt is evaluated by now
            token: int = sample(*args, **kwargs)
            job.report.sampled_tokens += 1
            job.last_token = token
            return token

        # Llama.generate calls self.sample once per token: the one per-token hook that
        # sits in plain Python (a logits processor runs inside a C callback, where an
        # exception could not unwind the generation).
        llama.sample = counting_sample
        self._llama = llama
        self.chat_format = llama.chat_format

    def _free(self) -> None:
        llama, self._llama = self._llama, None
        if llama is None:
            return
        del llama.sample  # break the llama → wrapper → llama cycle so the arrays go at once
        llama.close()  # frees weights, KV cache and context now, not whenever GC runs
        del llama
        gc.collect()
