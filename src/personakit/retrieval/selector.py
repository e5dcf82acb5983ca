r"""Retriever selection for personalised generation: RSPG-Pre and RSPG-Post.

Salemi, Kallumadi and Zamani (SIGIR 2024), §3.2.  No retriever wins on every input
(their Figure 3), so RSPG builds one prompt per retriever $R_i \in \mathcal{R}$ and
lets a learned selector pick, per input, the prompt to use:

$$S_w(R_i, x) = w^\top \operatorname{pool}\big(\operatorname{Enc}(t_i)\big) + b,
  \qquad \hat{\imath}(x) = \arg\max_i S_w(R_i, x),$$

where $t_i$ is the text the encoder reads for retriever $R_i$:

* **RSPG-Pre** (``mode="pre"``): the prompt $\phi_p(x, R_i(\phi_q(x); P_u))$; the
  choice is made *before* generation, so the LLM runs once per input.
* **RSPG-Post** (``mode="post"``): the prompt concatenated with the LLM's output for
  that prompt; the LLM runs once per retriever and the selector picks an output.

The selector is trained by distillation from the downstream metric
(:class:`personakit.losses.SelectorKLLoss`, :class:`personakit.training.RSPGTrainer`).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from personakit.config import BaseConfig, atomic_write_bytes
from personakit.functional.losses import last_token_pool, masked_mean

__all__ = ["RetrieverSelector", "RetrieverSelectorConfig", "SelectionResult"]

_CONFIG_FILE = "selector_config.json"
_HEAD_FILE = "head.safetensors"
_ENCODER_DIR = "encoder"


@dataclass
class SelectionResult:
    """The retriever chosen for one input.

    Attributes:
        index: Position of the chosen retriever (0-based).
        name: Its name (``retriever_names``, the keys of a mapping input, or ``"retriever_{i}"``).
        prompt: The chosen retriever's prompt (feed it to the LLM for RSPG-Pre).
        output: The LLM output for that prompt, when outputs were given (RSPG-Post), else ``None``.
        scores: The selector's score for every retriever, in input order.
        names: Every retriever's name, in input order.
    """

    index: int
    name: str
    prompt: str
    output: Optional[str]
    scores: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


class RetrieverSelector(nn.Module):
    r"""Encoder + linear head that scores each retriever's prompt for an input (RSPG, Salemi et al. 2024, §3.2).

    $$S_w(R_i, x) = \big(w^\top h_i + b\big) / \tau, \qquad
      P_{S_w}(R_i \mid x) = \operatorname{softmax}_i S_w(R_i, x) \quad \text{(Eq. 6)},$$

    with $h_i$ the pooled final-layer representation of the text for retriever
    $R_i$ (``pooling="cls"``: the first token, as a sequence classifier reads it;
    ``"mean"``: masked mean; ``"last"``: the last non-padding token, for decoder-only
    encoders).  :meth:`select` returns $\arg\max_i S_w(R_i, x)$.

    **Input format.**  Pre: the prompt alone, ``tokenizer(prompt, truncation=True)``.
    Post: the tokenizer's *pair* encoding of ``(prompt, output)``, i.e.
    ``[CLS] prompt [SEP] output [SEP]`` for BERT-like encoders (``<s> prompt </s></s>
    output </s>`` for RoBERTa/Longformer), with segment ids where the model has them.
    Only the prompt is truncated (``truncation="only_first"``, on the tokenizer's
    ``truncation_side``), so the output is kept whole; an output that alone exceeds
    ``max_length`` is the one case where both sides are cut (``"longest_first"``).
    All ``B × R`` texts of a batch go through the encoder in one pass.

    **Departures from the paper.**  The paper uses Longformer-base with inputs of
    1024 tokens; the default here is the embedded all-MiniLM-L6-v2 (512 positions),
    and any Hugging Face encoder works (pass ``"allenai/longformer-base-4096"`` or
    a local copy and ``max_length=1024``; Longformer gets global attention on its
    first token).  The score temperature $\tau$ (default 1, the paper's) only rescales
    the head's output.

    Args:
        encoder: An embedded name (``"minilm"``), a local folder or hub id (loaded
            with :func:`personakit.backbones.load_encoder`), a ``(model, tokenizer)``
            pair, or a model instance together with ``tokenizer``.  The model must
            return ``last_hidden_state`` (an ``AutoModel``).
        tokenizer: The tokenizer, when ``encoder`` is a model instance.
        mode: ``"pre"`` (score prompts) or ``"post"`` (score prompt + output).
        max_length: Token budget per text (capped by the tokenizer's ``model_max_length``).
        pooling: ``"cls"``, ``"mean"`` or ``"last"``.
        temperature: $\tau > 0$ dividing the scores.
        retriever_names: Optional names of the retrievers, in the order their prompts
            are given (used by :meth:`choose`; checks the number of prompts).

    Shapes:
        - ``forward(prompts, outputs)`` / ``score(...)``: ``[B, R]`` from ``B`` inputs with ``R`` prompts each
        - ``score_encoded(batch)``: ``[N]`` from a tokenised batch of ``N`` texts

    Example:
        >>> selector = RetrieverSelector("minilm", mode="post")  # doctest: +SKIP
        >>> prompts = [["profile by BM25 ... input", "profile by recency ... input"]]  # one input, two retrievers
        >>> outputs = [["comedy", "drama"]]  # the LLM's answer to each prompt
        >>> selector.choose(prompts, outputs)[0].output  # doctest: +SKIP
        'drama'

    Citation:
        Salemi, Kallumadi and Zamani (2024). *Optimization Methods for Personalizing
        Large Language Models through Retrieval Augmentation.* SIGIR.
    """

    def __init__(self, encoder: Any = "minilm", tokenizer: Any = None, mode: Literal["pre", "post"] = "pre",
                 max_length: int = 512, pooling: Literal["cls", "mean", "last"] = "cls", temperature: float = 1.0,
                 retriever_names: Optional[Sequence[str]] = None):
        super().__init__()
        if mode not in ("pre", "post"):
            raise ValueError(f"RetrieverSelector: mode must be 'pre' or 'post'; got {mode!r}")
        if pooling not in ("cls", "mean", "last"):
            raise ValueError(f"RetrieverSelector: pooling must be 'cls', 'mean' or 'last'; got {pooling!r}")
        if max_length < 4:
            raise ValueError(f"RetrieverSelector: max_length must be >= 4; got {max_length}")
        if temperature <= 0:
            raise ValueError(f"RetrieverSelector: temperature must be > 0; got {temperature}")
        if retriever_names is not None:
            retriever_names = [str(n) for n in retriever_names]
            if not retriever_names or len(set(retriever_names)) != len(retriever_names):
                raise ValueError(f"RetrieverSelector: retriever_names must be non-empty and unique; got {retriever_names}")
        model, tok, name = _resolve_encoder(encoder, tokenizer)
        self.encoder = model
        self.tokenizer = tok
        self.encoder_name = name
        self.mode = mode
        self.max_length = int(max_length)
        self.pooling = pooling
        self.temperature = float(temperature)
        self.retriever_names = retriever_names
        if getattr(tok, "pad_token", None) is None:
            if getattr(tok, "eos_token", None) is None:
                raise ValueError("RetrieverSelector: the tokenizer has neither a pad token nor an eos token to pad with")
            tok.pad_token = tok.eos_token
        hidden = _hidden_size(model)
        self.head = nn.Linear(hidden, 1)
        params = inspect.signature(model.forward).parameters
        self._accepts = {k for k in ("token_type_ids", "global_attention_mask") if k in params}
        self.reset_parameters()

    # ------------------------------------------------------------------ setup
    def reset_parameters(self) -> None:
        """Re-initialise the linear head ($w \\sim \\mathcal{N}(0, 0.02^2)$, $b = 0$); the encoder keeps its weights."""
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def extra_repr(self) -> str:
        names = f", retriever_names={self.retriever_names}" if self.retriever_names else ""
        return (f"encoder={self.encoder_name!r}, mode={self.mode!r}, max_length={self.max_length}, "
                f"pooling={self.pooling!r}, temperature={self.temperature}{names}")

    @property
    def effective_max_length(self) -> int:
        """``max_length`` capped by the tokenizer's ``model_max_length``."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < 10**8:
            return min(self.max_length, limit)
        return self.max_length

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def config(self) -> "RetrieverSelectorConfig":
        """The :class:`RetrieverSelectorConfig` of this selector (``encoder`` is its name or path)."""
        return RetrieverSelectorConfig(encoder=self.encoder_name, mode=self.mode, max_length=self.max_length,
                                       pooling=self.pooling, temperature=self.temperature,
                                       retriever_names=self.retriever_names)

    # ------------------------------------------------------------- inputs
    def normalize_inputs(self, prompts: Sequence[Any], outputs: Optional[Sequence[Any]] = None
                         ) -> tuple[list[list[str]], Optional[list[list[str]]], list[str]]:
        """Validate and split the per-input texts.

        Args:
            prompts: One entry per input: a list of prompts (one per retriever), a list
                of ``(prompt, output)`` pairs, or a mapping ``retriever name → prompt``
                (or ``→ (prompt, output)``).
            outputs: Optional LLM outputs, shaped like ``prompts`` (lists, or mappings
                with the same keys).

        Returns:
            ``(prompts [B][R], outputs [B][R] or None, names [R])``.

        Raises:
            ValueError: naming the input (and retriever) that is malformed, or inputs
                with different numbers of retrievers.
        """
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise ValueError("prompts must be a list with one entry per input (each a list of prompts, one per "
                             f"retriever); got {type(prompts).__name__}")
        if outputs is not None and len(outputs) != len(prompts):
            raise ValueError(f"outputs has {len(outputs)} entries but prompts has {len(prompts)}")
        names: Optional[list[str]] = None
        all_p: list[list[str]] = []
        all_o: list[list[str]] = []
        have_outputs: Optional[bool] = None
        for b, entry in enumerate(prompts):
            entry_names, ps, os_ = _split_entry(entry, b, "prompts")
            if outputs is not None:
                if os_ is not None:
                    raise ValueError(f"input {b}: outputs were given both as (prompt, output) pairs and as `outputs`")
                out_entry = outputs[b]
                if isinstance(out_entry, Mapping):
                    if entry_names is None or set(out_entry) != set(entry_names):
                        raise ValueError(f"input {b}: outputs keys {sorted(map(str, out_entry))} do not match the "
                                         f"prompt keys {entry_names}")
                    os_ = [out_entry[n] for n in entry_names]
                elif isinstance(out_entry, (str, bytes)) or not isinstance(out_entry, Sequence):
                    raise ValueError(f"input {b}: outputs must be a list of outputs (one per retriever); got "
                                     f"{type(out_entry).__name__}")
                else:
                    os_ = list(out_entry)
                if len(os_) != len(ps):
                    raise ValueError(f"input {b}: {len(ps)} prompts but {len(os_)} outputs")
                for i, o in enumerate(os_):
                    if not isinstance(o, str):
                        raise ValueError(f"input {b}, retriever {i}: output must be a string; got {type(o).__name__}")
            if have_outputs is None:
                have_outputs = os_ is not None
            elif have_outputs != (os_ is not None):
                raise ValueError(f"input {b}: some inputs have outputs and others do not")
            if names is None:
                names = entry_names if entry_names is not None else (
                    list(self.retriever_names) if self.retriever_names else [f"retriever_{i}" for i in range(len(ps))])
            if len(ps) != len(names):
                raise ValueError(f"input {b}: {len(ps)} prompts, expected {len(names)} (one per retriever"
                                 + (f": {names})" if self.retriever_names or entry_names else ")"))
            if entry_names is not None and entry_names != names and set(entry_names) != set(names):
                raise ValueError(f"input {b}: retriever names {entry_names} differ from {names}")
            if entry_names is not None and entry_names != names:  # same names, another order: reorder
                order = [entry_names.index(n) for n in names]
                ps = [ps[j] for j in order]
                os_ = [os_[j] for j in order] if os_ is not None else None
            all_p.append(ps)
            if os_ is not None:
                all_o.append(os_)
        if names is None:
            names = list(self.retriever_names or [])
        if self.retriever_names and names != self.retriever_names:
            if set(names) != set(self.retriever_names):
                raise ValueError(f"retriever names {names} differ from the selector's {self.retriever_names}")
            order = [names.index(n) for n in self.retriever_names]
            all_p = [[ps[j] for j in order] for ps in all_p]
            all_o = [[os_[j] for j in order] for os_ in all_o]
            names = list(self.retriever_names)
        return all_p, (all_o if have_outputs else None), names

    def tokenize(self, prompts: Sequence[str], outputs: Optional[Sequence[str]] = None) -> Mapping[str, Tensor]:
        """Tokenise a flat list of ``N`` texts (prompts, or prompt/output pairs for Post) into padded tensors.

        Args:
            prompts: ``N`` prompts.
            outputs: ``N`` outputs (Post), or ``None``.

        Returns:
            A ``BatchEncoding`` with ``input_ids`` / ``attention_mask`` (``[N, T]``) and
            the tokenizer's other inputs, on the selector's device.
        """
        tok, max_len = self.tokenizer, self.effective_max_length
        prompts = list(prompts)
        if outputs is None:
            batch = tok(prompts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        else:
            outputs = list(outputs)
            try:
                batch = tok(prompts, outputs, padding=True, truncation="only_first", max_length=max_len,
                            return_tensors="pt")
            except Exception:  # an output alone exceeds the budget: truncate pair by pair, cut both only there
                encoded = []
                for p, o in zip(prompts, outputs):
                    try:
                        encoded.append(tok(p, o, truncation="only_first", max_length=max_len))
                    except Exception:
                        encoded.append(tok(p, o, truncation="longest_first", max_length=max_len))
                batch = tok.pad(encoded, padding=True, return_tensors="pt")
        return batch.to(self.device)

    # --------------------------------------------------------------- scoring
    def score_encoded(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Scores ``[N]`` of a tokenised batch (with gradients)."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        kwargs: dict[str, Tensor] = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._accepts and "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        if "global_attention_mask" in self._accepts:  # Longformer: global attention on the first token
            glob = torch.zeros_like(mask)
            glob[:, 0] = 1
            kwargs["global_attention_mask"] = glob
        hidden = self.encoder(**kwargs).last_hidden_state  # (N, T, D)
        if self.pooling == "cls":
            pooled = hidden[:, 0]  # (N, D)
        elif self.pooling == "mean":
            pooled = masked_mean(hidden, mask, dim=1)  # (N, D)
        else:
            pooled = last_token_pool(hidden, mask)  # (N, D)
        pooled = pooled.to(self.head.weight.dtype)
        return self.head(pooled).squeeze(-1) / self.temperature  # (N,)

    def _encode_inputs(self, prompts: list[list[str]], outputs: Optional[list[list[str]]]) -> Tensor:
        n_inputs, n_retrievers = len(prompts), len(prompts[0]) if prompts else 0
        if n_inputs == 0:
            return torch.zeros(0, len(self.retriever_names or []), device=self.device)
        flat_p = [p for ps in prompts for p in ps]  # B*R texts
        flat_o = [o for os_ in outputs for o in os_] if outputs is not None else None
        scores = self.score_encoded(self.tokenize(flat_p, flat_o))  # (B*R,)
        return scores.view(n_inputs, n_retrievers)  # (B, R)

    def _texts_for_mode(self, prompts: Sequence[Any], outputs: Optional[Sequence[Any]], *, for_scoring: bool
                        ) -> tuple[list[list[str]], Optional[list[list[str]]], list[str]]:
        ps, os_, names = self.normalize_inputs(prompts, outputs)
        if self.mode == "post" and os_ is None and ps:
            raise ValueError("mode='post' scores each prompt with the LLM's output for it: pass outputs "
                             "(a list per input, one per retriever) or (prompt, output) pairs")
        if self.mode == "pre" and os_ is not None and for_scoring:
            raise ValueError("mode='pre' scores prompts only (before generation); pass no outputs to "
                             "forward/score, or use mode='post'")
        return ps, os_, names

    def forward(self, prompts: Sequence[Any], outputs: Optional[Sequence[Any]] = None) -> Tensor:
        """Scores ``[B, R]`` with gradients, in one encoder pass over the ``B × R`` texts.

        Args:
            prompts: One entry per input (see :meth:`normalize_inputs`).
            outputs: The LLM outputs per input and retriever (Post only).
        """
        ps, os_, _ = self._texts_for_mode(prompts, outputs, for_scoring=True)
        return self._encode_inputs(ps, os_)  # (B, R)

    @torch.no_grad()
    def score(self, prompts: Sequence[Any], outputs: Optional[Sequence[Any]] = None,
              batch_size: Optional[int] = None) -> Tensor:
        """Scores ``[B, R]`` without gradients, ``batch_size`` inputs (all by default) per encoder pass.

        The module's train/eval mode is left as it is; call ``.eval()`` for inference.
        """
        ps, os_, _ = self._texts_for_mode(prompts, outputs, for_scoring=True)
        return self._score_chunks(ps, os_, batch_size)

    def _score_chunks(self, ps: list[list[str]], os_: Optional[list[list[str]]], batch_size: Optional[int]) -> Tensor:
        step = batch_size or max(1, len(ps))
        if step < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        parts = [self._encode_inputs(ps[i:i + step], os_[i:i + step] if os_ is not None else None)
                 for i in range(0, len(ps), step)]
        if not parts:
            return torch.zeros(0, len(self.retriever_names or []), device=self.device)
        return torch.cat(parts, 0)  # (B, R)

    def select(self, prompts: Sequence[Any], outputs: Optional[Sequence[Any]] = None,
               batch_size: Optional[int] = None) -> list[int]:
        """Index of the best-scored retriever per input, $\\arg\\max_i S_w(R_i, x)$ (first on ties)."""
        return self.score(prompts, outputs, batch_size=batch_size).argmax(-1).tolist()

    @torch.no_grad()
    def choose(self, prompts_per_retriever: Sequence[Any], outputs_per_retriever: Optional[Sequence[Any]] = None,
               batch_size: Optional[int] = None) -> list[SelectionResult]:
        """Pick a retriever per input and return its prompt (and output).

        For RSPG-Pre the outputs are optional and never read by the encoder (pass them
        to get the chosen one back); for RSPG-Post they are required.

        Args:
            prompts_per_retriever: One entry per input: prompts (one per retriever), or a
                mapping ``retriever name → prompt``, or ``(prompt, output)`` pairs.
            outputs_per_retriever: The LLM outputs, shaped like the prompts.
            batch_size: Inputs per encoder pass (all by default).

        Returns:
            One :class:`SelectionResult` per input.
        """
        ps, os_, names = self._texts_for_mode(prompts_per_retriever, outputs_per_retriever, for_scoring=False)
        scores = self._score_chunks(ps, os_ if self.mode == "post" else None, batch_size).float().cpu()  # (B, R)
        results = []
        for b, row in enumerate(scores):
            i = int(row.argmax())
            results.append(SelectionResult(index=i, name=names[i], prompt=ps[b][i],
                                           output=os_[b][i] if os_ is not None else None,
                                           scores=row.tolist(), names=list(names)))
        return results

    # ---------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Save to ``directory`` atomically: ``selector_config.json``, ``head.safetensors`` and ``encoder/``.

        The encoder and tokenizer are written with their own ``save_pretrained``, so
        ``encoder/`` is an ordinary Hugging Face folder.  Everything is written to a
        temporary sibling folder first and renamed into place.
        """
        from safetensors.torch import save

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            self.encoder.save_pretrained(tmp / _ENCODER_DIR)
            self.tokenizer.save_pretrained(tmp / _ENCODER_DIR)
            head = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
            atomic_write_bytes(tmp / _HEAD_FILE, save(head, metadata={"format": "pt"}))
            cfg = self.config().model_copy(update={"encoder": _ENCODER_DIR})
            cfg.to_json(tmp / _CONFIG_FILE)
            old = None
            if directory.exists():
                old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(directory, old)
            os.replace(tmp, directory)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], device: Any = None, **overrides: Any
                        ) -> "RetrieverSelector":
        """Load a selector written by :meth:`save_pretrained`.

        Args:
            directory: The saved folder.
            device: Where to move the selector.
            **overrides: Config fields to change (e.g. ``max_length``); the encoder and head are the saved ones.
        """
        from safetensors.torch import load_file

        from personakit.backbones import load_encoder

        directory = Path(directory)
        cfg_path = directory / _CONFIG_FILE
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{cfg_path}: no selector config (was the folder written by save_pretrained?)")
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
        data.update(overrides)
        cfg = RetrieverSelectorConfig.from_dict(data, source=str(cfg_path))
        enc_ref = Path(cfg.encoder)
        enc_path = enc_ref if enc_ref.is_absolute() else directory / enc_ref
        model, tok = load_encoder(enc_path)
        selector = cfg.build(encoder=model, tokenizer=tok)
        selector.encoder_name = cfg.encoder if enc_ref.is_absolute() else str(enc_path)
        head_path = directory / _HEAD_FILE
        try:
            selector.head.load_state_dict(load_file(str(head_path)))
        except (FileNotFoundError, RuntimeError, KeyError) as err:
            raise ValueError(f"{head_path}: could not load the selector head: {err}") from err
        if device is not None:
            selector = selector.to(device)
        return selector


def _split_entry(entry: Any, b: int, what: str) -> tuple[Optional[list[str]], list[str], Optional[list[str]]]:
    """``(names or None, prompts, outputs or None)`` of one input."""
    names: Optional[list[str]] = None
    if isinstance(entry, Mapping):
        names = [str(k) for k in entry]
        values = list(entry.values())
    elif isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence):
        raise ValueError(f"input {b}: {what} must be a list (one per retriever) or a mapping name → prompt; got "
                         f"{type(entry).__name__}")
    else:
        values = list(entry)
    if not values:
        raise ValueError(f"input {b}: no retriever prompts")
    prompts: list[str] = []
    outputs: list[str] = []
    pairs = [isinstance(v, (tuple, list)) for v in values]
    if any(pairs) and not all(pairs):
        raise ValueError(f"input {b}: mix of plain prompts and (prompt, output) pairs")
    for i, v in enumerate(values):
        label = f"input {b}, retriever {names[i] if names else i}"
        if pairs[i]:
            if len(v) != 2 or not all(isinstance(t, str) for t in v):
                raise ValueError(f"{label}: expected a (prompt, output) pair of strings; got {v!r:.80}")
            prompts.append(v[0])
            outputs.append(v[1])
        elif isinstance(v, str):
            prompts.append(v)
        else:
            raise ValueError(f"{label}: prompt must be a string; got {type(v).__name__}")
    return names, prompts, (outputs if any(pairs) else None)


def _resolve_encoder(encoder: Any, tokenizer: Any) -> tuple[nn.Module, Any, str]:
    if isinstance(encoder, (str, os.PathLike)):
        if tokenizer is not None:
            raise ValueError("RetrieverSelector: pass `tokenizer` only with a model instance, not with a name or path")
        from personakit.backbones import load_encoder

        model, tok = load_encoder(encoder)
        return model, tok, str(encoder)
    if isinstance(encoder, tuple) and len(encoder) == 2 and isinstance(encoder[0], nn.Module):
        if tokenizer is not None:
            raise ValueError("RetrieverSelector: the tokenizer is given twice (in the pair and as `tokenizer`)")
        encoder, tokenizer = encoder
    if isinstance(encoder, nn.Module):
        if tokenizer is None:
            raise ValueError("RetrieverSelector: a model instance needs its `tokenizer`")
        name = str(getattr(encoder, "name_or_path", "") or getattr(getattr(encoder, "config", None), "_name_or_path", "")
                   or type(encoder).__name__)
        return encoder, tokenizer, name
    raise TypeError("RetrieverSelector: encoder must be a name or path, a (model, tokenizer) pair or a model with "
                    f"`tokenizer`; got {type(encoder).__name__}")


def _hidden_size(model: nn.Module) -> int:
    cfg = getattr(model, "config", None)
    for attr in ("hidden_size", "d_model", "dim", "n_embd"):
        value = getattr(cfg, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"RetrieverSelector: cannot tell the hidden size of {type(model).__name__} from its config")


class RetrieverSelectorConfig(BaseConfig):
    """Config of :class:`RetrieverSelector` (a model instance is passed to ``build(encoder=..., tokenizer=...)``)."""

    _target_ = RetrieverSelector

    encoder: str = Field("minilm", description=(
        "Embedded name (``\"minilm\"``), local folder or hub id of the encoder (the paper: Longformer-base)."))
    mode: Literal["pre", "post"] = Field("pre", description=(
        "``\"pre\"``: score each retriever's prompt; ``\"post\"``: score prompt + the LLM's output."))
    max_length: int = Field(512, ge=4, description="Token budget per text (the paper: 1024 with Longformer).")
    pooling: Literal["cls", "mean", "last"] = Field("cls", description=(
        "Pooling of the final-layer states: first token, masked mean, or last non-padding token."))
    temperature: float = Field(1.0, gt=0.0, description="Temperature $\\tau$ dividing the selection scores.")
    retriever_names: Optional[list[str]] = Field(None, description=(
        "Names of the retrievers, in the order their prompts are given."))

    @field_validator("retriever_names")
    @classmethod
    def _unique_names(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"retriever_names must be non-empty and unique; got {value}")
        return value
