"""Local Hugging Face checkpoints as ReAct policies, with batched generation across episodes.

One batched decode per turn for all running episodes, with a stopping rule per row (the end of the
`Action:`/`Answer:` line, or end-of-turn). Greedy by default (the paper evaluates greedily).

Prefix reuse (on by default): each running episode keeps the KV cache of every token already
processed (its prompt and its own generated turn), and the next turn prefills only from the first
token where the new context differs from the cached ids (the longest common prefix): usually the new
observation message. When the context policy elides an old observation the common prefix ends
there and the rest is recomputed, so reuse never changes what the model attends to. Without it
(`prefix_cache=False`) every turn goes through `model.generate` with the whole context.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from sad_eval.agents.base import EpisodeState, Turn
from sad_eval.agents.kv_reuse import KVStore, ReuseStats, decode_with_reuse
from sad_eval.agents.prompts import build_context
from sad_eval.agents.stops import ACTION_LINE_END, action_line_end, stop_index  # noqa: F401 (their old home)
from sad_eval.errors import SadEvalError
from sad_eval.segment import parse_turn


@dataclass
class Generation:
    text: str  # generated text, cut after the action line / stop string
    tokens: int  # tokens generated up to the cut
    logprobs: list[float] | None = None  # chosen-token log-probs (when asked)
    # when asked (``top_logprobs=N``): the generated ids and, per generated token, the top-N
    # (token id, log-prob) of the model's raw (temperature-1) distribution
    token_ids: list[int] | None = None
    top_logprobs: list[list[tuple[int, float]]] | None = None


@dataclass
class DecodingConfig:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class HFGenerator:
    """Batched text generation with per-row stopping (also used by `sad-eval serve model`)."""

    def __init__(self, path: str | Path, dtype: str | None = None, device: str | None = None, threads: int | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from sad_eval.models import resolve_model

        self.path = resolve_model(str(path))
        # On a small, shared CPU, torch's busy-waiting threads can make small matmuls 50x slower
        # (measured: 0.12 ms vs 5.9 ms per 192-wide linear on 2 loaded cores); let users pin it.
        threads = threads or int(os.environ.get("SAD_EVAL_THREADS", "0") or 0)
        if threads:
            torch.set_num_threads(threads)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # fp32 on CPU (bf16 matmuls are slower there without AMX), bf16 on a GPU
        dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=getattr(torch, dtype)).to(device)
        except Exception as e:
            raise SadEvalError(f"cannot load checkpoint {self.path}: {e}") from e
        self.model.eval()
        self.device = device
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.eos_ids = sorted({i for i in (tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>"))
                               if isinstance(i, int) and i >= 0 and i != tok.unk_token_id})
        self.max_context = self._max_context()
        self.kv = KVStore()
        self.reuse_stats = ReuseStats()
        self._conv = 0  # names for unnamed conversations (serve model)

    def training_arg(self, key: str, default: Any = None) -> Any:
        """A setting the student was distilled with (its `training_args.json`), if it is one of ours."""
        args = self.path / "training_args.json"
        if not args.is_file():
            return default
        value = json.loads(args.read_text()).get(key)
        return default if value is None else value

    def _max_context(self) -> int:
        """The student's training window if recorded (train and eval contexts must match), else the model's."""
        seq = self.training_arg("seq_len")
        if seq:
            return int(seq)
        return int(min(getattr(self.model.config, "max_position_embeddings", 2048), 2048))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, prompts: Sequence[str], cfg: DecodingConfig, stop: Sequence[str] = (),
                 action_stop: bool = True, logprobs: bool = False, top_logprobs: int = 0) -> list[Generation]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        enc = tok(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        n_prompt = enc["input_ids"].shape[1]

        newline_ids = self._newline_ids()

        class RowStop(StoppingCriteria):
            """Per-row: stop once the row's new text holds a complete action line or a stop string.
            An action line can only complete on a token with a newline, so only those rows are decoded
            (decoding every row at every step cost more than the batched forward itself)."""

            def __call__(self, input_ids, scores, **kw):
                done = []
                for row in input_ids[:, n_prompt:]:
                    if not stop and int(row[-1]) not in newline_ids:
                        done.append(False)
                        continue
                    text = tok.decode(row, skip_special_tokens=True)
                    done.append(stop_index(text, stop, action_stop) is not None)
                return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

        gen_kwargs = dict(max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                          eos_token_id=self.eos_ids or None, stopping_criteria=StoppingCriteriaList([RowStop()]),
                          return_dict_in_generate=True, output_scores=logprobs,
                          output_logits=top_logprobs > 0)  # raw logits: scores are after temperature/top-p
        if cfg.temperature > 0:
            torch.manual_seed(cfg.seed)
            gen_kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p)
        else:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kwargs)
        seqs = out.sequences[:, n_prompt:]
        st = self.reuse_stats  # the same physical accounting as the reuse path
        st.prefilled += seqs.shape[0] * n_prompt
        st.prompt_tokens += int(enc["attention_mask"].sum())
        st.generated += seqs.shape[0] * seqs.shape[1]
        results = []
        for b, row in enumerate(seqs):
            ids = row.tolist()
            text, n = self._cut(ids, stop, action_stop)
            lp = None
            if logprobs:
                lp = [float(torch.log_softmax(out.scores[i][b].float(), -1)[ids[i]]) for i in range(n)]
            top = None
            if top_logprobs > 0:
                top, raw = [], []
                for i in range(n):
                    dist = torch.log_softmax(out.logits[i][b].float(), -1)
                    t = dist.topk(top_logprobs)
                    top.append(list(zip(t.indices.tolist(), t.values.tolist())))
                    raw.append(float(dist[ids[i]]))
                lp = lp if logprobs else raw  # chosen-token log-probs of the same raw distribution
            results.append(Generation(text, n, lp, ids[:n] if top_logprobs > 0 else None, top))
        return results

    def generate_reusing(self, prompts: Sequence[str], keys: Sequence, cfg: DecodingConfig,
                         stop: Sequence[str] = (), action_stop: bool = True, logprobs: bool = False,
                         top_logprobs: int = 0) -> list[Generation]:
        """`generate` with prefix reuse: ``keys[i]`` names the cache of row i (an episode); a key
        of None looks for the cached conversation with the longest common prefix (serve model)."""
        tok = self.tokenizer
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        keys = list(keys)
        cached = []
        for b, (k, i) in enumerate(zip(keys, ids)):
            if k is None:  # a conversation without a name: reuse the best match, and replace it only
                match = self.kv.longest_match(i)  # when this prompt continues it (else keep both)
                entry = self.kv.get(match) if match is not None else None
                cached.append(entry)
                self._conv += 1
                keys[b] = match if entry is not None and i[:len(entry.ids)] == entry.ids else ("conv", self._conv)
            else:
                cached.append(self.kv.get(k))
        newline_ids = self._newline_ids()

        def is_done(i: int, gen: list[int], last: int) -> bool:
            if not stop and last not in newline_ids:
                return False
            return stop_index(tok.decode(gen, skip_special_tokens=True), stop, action_stop) is not None

        logprobs = logprobs or top_logprobs > 0  # top-N comes with the chosen token's own log-prob
        rows, caches = decode_with_reuse(
            self.model, ids, cached, max_new_tokens=cfg.max_new_tokens, eos_ids=self.eos_ids, is_done=is_done,
            temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, logprobs=logprobs,
            top_logprobs=top_logprobs, pad_id=tok.pad_token_id, stats=self.reuse_stats)
        results = []
        for b, (r, c) in enumerate(zip(rows, caches)):
            if c is not None:
                self.kv.put(keys[b], c)
            gen = r.gen
            text, n = self._cut(gen, stop, action_stop)
            results.append(Generation(text, n, r.logprobs[:n] if logprobs else None,
                                      top_logprobs=r.top[:n] if top_logprobs else None,
                                      token_ids=gen[:n] if top_logprobs else None))
        return results

    def _cut(self, ids: list[int], stop: Sequence[str], action_stop: bool) -> tuple[str, int]:
        """A row's generated text and token count: up to end-of-turn (padding after it dropped),
        then cut after the action line or before a stop string."""
        n = next((i for i, t in enumerate(ids) if t in self.eos_ids), len(ids))
        text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
        cut = stop_index(text, stop, action_stop)
        if cut is not None:
            text = text[:cut]
            n = min(n, self._tokens_for_prefix(ids[:n], len(text)))
        return text, n

    def _newline_ids(self) -> set[int]:
        """Vocabulary ids whose text contains a newline (computed once)."""
        if not hasattr(self, "_nl"):
            vocab = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
            self._nl = {i for i, t in enumerate(vocab)
                        if t and ("\n" in self.tokenizer.convert_tokens_to_string([t]))}
        return self._nl

    def _tokens_for_prefix(self, ids: list[int], n_chars: int) -> int:
        """Smallest token count whose decoding covers ``n_chars`` characters."""
        for k in range(1, len(ids) + 1):
            if len(self.tokenizer.decode(ids[:k], skip_special_tokens=True)) >= n_chars:
                return k
        return len(ids)


def majority_action(actions: Sequence[str | None]) -> tuple[int, dict[str, int]]:
    """Self-consistent action selection (Kang et al. 2025, arXiv 2505.17612, "self-consistent action
    generation"): of K sampled turns, keep the most frequent well-formed action. ``actions[j]`` is
    sample j's action, None where it had none. Returns the index of the first sample with the winning
    action (ties: the action sampled first) and the counts of every well-formed action; with no
    well-formed sample, sample 0 (its malformed turn is what the env is sent, as without voting)."""
    counts = Counter(a for a in actions if a is not None)
    if not counts:
        return 0, {}
    best = max(counts.values())
    j = next(j for j, a in enumerate(actions) if a is not None and counts[a] == best)
    return j, dict(counts)


class HFPolicy:
    """A local checkpoint as a batched ReAct policy."""

    def __init__(self, path: str | Path, decoding: DecodingConfig | None = None, chat: bool = True,
                 max_context: int | None = None, dtype: str | None = None, logprobs: bool = False, name: str | None = None,
                 threads: int | None = None, exemplars=None, top_logprobs: int = 0, prefix_cache: bool = True,
                 vote: int = 1, vote_temperature: float = 0.7):
        self.gen = HFGenerator(path, dtype=dtype, threads=threads)
        # > 1: sample this many turns per step and act on the most frequent action (majority_action)
        self.vote, self.vote_temperature = vote, vote_temperature
        self.top_logprobs = top_logprobs  # per generated token, for collect --teacher-topk
        self.exemplars = exemplars  # agents.exemplars.Exemplars (per task) or None
        self.prefix_cache = prefix_cache
        self.decoding = decoding or DecodingConfig()
        # a student distilled without the chat template is shown prompts without it, as in training
        self.chat = (chat and bool(getattr(self.gen.tokenizer, "chat_template", None))
                     and bool(self.gen.training_arg("chat", True)))
        self.max_context = max_context or self.gen.max_context
        self.logprobs = logprobs
        self.name = name or Path(str(path)).name

    def fit(self, state: EpisodeState):
        """The rendered context of the episode's next turn (the one context policy, as in training)."""
        shots = self.exemplars.for_task(state.task_id) if self.exemplars else ()
        msgs, rendered = build_context(state.env, state.task, state.steps, self.gen.tokenizer, chat=self.chat,
                                       max_tokens=self.max_context, exemplars=shots,
                                       reserve=self.decoding.max_new_tokens)
        state.memory["messages"] = msgs  # the context this turn is generated after (top-k sidecars)
        return rendered

    def context(self, state: EpisodeState) -> str:
        return self.fit(state).text

    def act(self, states: Sequence[EpisodeState]) -> list[Turn]:
        contexts = [self.fit(s) for s in states]
        if self.vote > 1:
            return self._act_by_vote(states, contexts)
        prompts = [c.text for c in contexts]
        top = {"top_logprobs": self.top_logprobs} if self.top_logprobs else {}
        if self.prefix_cache:
            keys = [(s.env, s.task_id, s.sample) for s in states]
            # a cache lives while its episode runs: every running episode is in every call
            self.gen.kv.keep_only(set(keys))
            gens = self.gen.generate_reusing(prompts, keys, self.decoding, logprobs=self.logprobs, **top)
        else:
            gens = self.gen.generate(prompts, self.decoding, logprobs=self.logprobs, **top)
        turns = []
        for s, g, c in zip(states, gens, contexts):
            p = parse_turn(s.env, g.text)
            turns.append(Turn(reasoning=p.reasoning, action=p.action, raw=g.text, invalid=not p.valid,
                              tokens=g.tokens, logprobs=g.logprobs, token_ids=g.token_ids,
                              top_logprobs=g.top_logprobs, context_tokens=c.tokens, obs_visible=c.obs_visible))
        return turns

    def _act_by_vote(self, states: Sequence[EpisodeState], contexts) -> list[Turn]:
        """K sampled turns per episode in one batched decode (K rows per episode, sharing its cached
        prefix); each episode keeps the turn of its majority action, and that turn's cache."""
        k = self.vote
        dec = replace(self.decoding, temperature=self.vote_temperature)
        prompts = [c.text for c in contexts for _ in range(k)]
        if self.prefix_cache:
            kv = self.gen.kv
            episodes = [(s.env, s.task_id, s.sample) for s in states]
            kv.keep_only(set(episodes))
            kv.capacity = max(kv.capacity, len(episodes) * (k + 1))  # the K candidates' caches too
            keys = []
            for ep in episodes:
                entry = kv.get(ep)  # read, never written, by the decode: K rows can share it
                for j in range(k):
                    keys.append((ep, j))
                    if entry is not None:
                        kv.put((ep, j), entry)
            gens = self.gen.generate_reusing(prompts, keys, dec, logprobs=self.logprobs)
        else:
            gens = self.gen.generate(prompts, dec, logprobs=self.logprobs)
        turns = []
        for i, (s, c) in enumerate(zip(states, contexts)):
            parsed = [parse_turn(s.env, g.text) for g in gens[i * k:(i + 1) * k]]
            j, counts = majority_action([p.action if p.valid else None for p in parsed])
            g, p = gens[i * k + j], parsed[j]
            if self.prefix_cache:
                chosen = self.gen.kv.get((episodes[i], j))
                if chosen is not None:
                    self.gen.kv.put(episodes[i], chosen)
            turns.append(Turn(reasoning=p.reasoning, action=p.action, raw=g.text, invalid=not p.valid,
                              tokens=g.tokens, logprobs=g.logprobs, context_tokens=c.tokens,
                              obs_visible=c.obs_visible, votes=counts))
        if self.prefix_cache:
            self.gen.kv.keep_only(set(episodes))  # the candidates' caches go
        return turns
