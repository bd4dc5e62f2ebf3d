"""Per-token log-probabilities of sampled completions, without the [N, T, V] logits.

For a completion token y_t predicted from the final-norm hidden state h_t (the decoder's output
before the LM head W, shape [V, H]), sampled at temperature tau:

    z_t      = (W h_t) / tau                    logits exactly as the sampler saw them
    logp_t   = z_t[y_t] - logsumexp(z_t)
    H_t      = logsumexp(z_t) - sum_v p_v z_v   entropy of p = softmax(z_t)

With Qwen3's vocabulary (V = 151,936) the naive `log_softmax(h @ W.T)` holds N*T*V floats
several times over (logits, fp32 copy, log-softmax, their gradients): about 25 GB for
8 x 2,048 tokens. `chunked_token_logprobs` processes `chunk` tokens at a time and keeps only
hidden, W, the targets and one logsumexp per token; backward recomputes each chunk's softmax:

    d logp_t / d z_t = onehot(y_t) - p_t
    d H_t    / d z_t = -p_t * (log p_t + H_t)
    d z_t    / d h_t = W / tau         so grad_h = (d/dz) @ W / tau, grad_W = (d/dz)^T @ h / tau

Memory is ~chunk x V floats instead of N x T x V. Logits are computed in fp32 (fp64 when the
inputs are fp64, for gradcheck), with autocast switched off inside the kernel so that a
`bf16-mixed` run gets fp32 logits too: rounding them to bf16 biases the log-probs (trl's kernel
notes the same). The entropy is differentiable too, so that an entropy bonus in the loss
(lit_verbrec/rl/losses.py) actually acts; when nothing uses it, backward skips its term.

Sources: trl 1.16 `trl/trainer/utils.py::selective_log_softmax` and
`trl/kernels/chunked_logprob.py` (which tiles the vocabulary instead of the tokens);
GRPO log-prob ratio: DeepSeekMath, arXiv 2402.03300, eq. 3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_log_softmax(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`log_softmax(logits, -1).gather(-1, index[..., None])[..., 0]` without a second [.., V] tensor.

    logits [..., V], index [...] -> [...]. In fp32/fp64: gather the chosen logit, subtract a
    per-row logsumexp (looped over the first dim to bound the temporary). bf16/fp16 logsumexp
    is inaccurate, so those dtypes take a row-wise log_softmax instead (as trl does).
    """
    if logits.dtype in (torch.float32, torch.float64):
        chosen = logits.gather(-1, index.unsqueeze(-1)).squeeze(-1)                  # [...]
        lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])          # [...]
        return chosen - lse
    return torch.stack([F.log_softmax(row, dim=-1).gather(-1, idx.unsqueeze(-1)).squeeze(-1)
                        for row, idx in zip(logits, index)])


class _ChunkedLogProbs(torch.autograd.Function):
    """hidden [M, H], weight [V, H], ids [M] -> (logprobs [M], entropy [M] or None)."""

    @staticmethod
    def forward(ctx, hidden, weight, ids, temperature: float, chunk: int, with_entropy: bool):
        with torch.autocast(hidden.device.type, enabled=False):   # fp32 logits under bf16-mixed too
            return _ChunkedLogProbs._forward(ctx, hidden, weight, ids, temperature, chunk, with_entropy)

    @staticmethod
    def _forward(ctx, hidden, weight, ids, temperature: float, chunk: int, with_entropy: bool):
        ctx.set_materialize_grads(False)  # entropy often has no gradient: skip its term then
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        w = weight.to(dtype)                                              # [V, H] upcast once per call
        M = hidden.shape[0]
        logprobs = hidden.new_empty(M, dtype=dtype)                       # [M]
        lse = hidden.new_empty(M, dtype=dtype)                            # [M]
        entropy = hidden.new_empty(M, dtype=dtype) if with_entropy else None
        for s in range(0, M, chunk):
            e = min(s + chunk, M)
            # One [c, V] buffer, modified in place (two with entropy): at V = 151,936 and
            # chunk = 1,024 each is 0.6 GB, so every extra copy shows in the peak.
            z = (hidden[s:e].to(dtype) @ w.T).div_(temperature)          # [c, V] tempered logits
            chosen = z.gather(-1, ids[s:e, None]).squeeze(-1)             # [c]
            top = z.amax(dim=-1)                                          # [c]
            z.sub_(top[:, None])                                          # z - max: exp cannot overflow
            if with_entropy:
                p = z.exp()                                               # [c, V] unnormalised probs
                total = p.sum(-1)                                         # [c]
                # H = log total - sum_v p_v (z_v - max) / total
                entropy[s:e] = total.log() - p.mul_(z).sum(-1) / total
                del p
            else:
                total = z.exp_().sum(-1)                                  # [c]
            lse[s:e] = top + total.log()
            logprobs[s:e] = chosen - lse[s:e]
            del z
        ctx.temperature, ctx.chunk = temperature, chunk
        ctx.save_for_backward(hidden, weight, ids, lse, entropy if with_entropy else lse)
        ctx.with_entropy = with_entropy
        return logprobs, entropy

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        with torch.autocast(ctx.saved_tensors[0].device.type, enabled=False):
            return _ChunkedLogProbs._backward(ctx, g_logp, g_ent)

    @staticmethod
    def _backward(ctx, g_logp, g_ent):
        hidden, weight, ids, lse, entropy = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[:2]
        g_ent = g_ent if ctx.with_entropy else None
        if (g_logp is None and g_ent is None) or not (need_h or need_w):
            return None, None, None, None, None, None
        dtype, T = lse.dtype, ctx.temperature
        w = weight.to(dtype)                                              # [V, H]
        grad_h = torch.zeros(hidden.shape, dtype=dtype, device=hidden.device) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=dtype, device=weight.device) if need_w else None
        g_logp = g_logp.to(dtype) if g_logp is not None else None
        g_ent = g_ent.to(dtype) if g_ent is not None else None
        for s in range(0, hidden.shape[0], ctx.chunk):
            e = min(s + ctx.chunk, hidden.shape[0])
            h = hidden[s:e].to(dtype)                                     # [c, H]
            logp = (h @ w.T).div_(T).sub_(lse[s:e, None])                 # [c, V] log p
            # dL/dz = g_logp * (onehot - p) - g_ent * p * (log p + H)
            #       = g_logp * onehot - p * [g_logp + g_ent * (log p + H)]
            if g_ent is not None:                                         # needs p and log p: 2 buffers
                p = logp.exp()                                            # [c, V]
                bracket = logp.add_(entropy[s:e, None]).mul_(g_ent[s:e, None])
                if g_logp is not None:
                    bracket.add_(g_logp[s:e, None])
                grad_z = p.mul_(bracket).neg_()
                del p, bracket
            else:                                                         # in place: 1 buffer
                grad_z = logp.exp_().mul_(-g_logp[s:e, None])
            del logp
            if g_logp is not None:
                grad_z.scatter_add_(1, ids[s:e, None], g_logp[s:e, None])
            grad_z.div_(T)                                                # z = logits / T
            if need_h:
                grad_h[s:e] = grad_z @ w
            if need_w:
                grad_w.addmm_(grad_z.T, h)
            del grad_z    # free before the next chunk's logits are allocated
        return (grad_h.to(hidden.dtype) if need_h else None,
                grad_w.to(weight.dtype) if need_w else None, None, None, None, None)


def chunked_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor,
                           temperature: float = 1.0, chunk: int = 1024,
                           with_entropy: bool = False) -> dict[str, torch.Tensor]:
    """Log-prob of each target under softmax(hidden @ weight.T / temperature), `chunk` tokens at a time.

    hidden [N, T, H] final-norm states, weight [V, H] LM head, ids [N, T] the token each position
    predicts. Returns {"logprobs": [N, T]} (+ "entropy": [N, T] when with_entropy), float32
    (float64 for float64 inputs), differentiable w.r.t. hidden and weight (if it requires grad).
    """
    if temperature <= 0 or chunk <= 0:
        raise ValueError(f"temperature and chunk must be positive, got {temperature}, {chunk}")
    N, T, H = hidden.shape
    logprobs, entropy = _ChunkedLogProbs.apply(hidden.reshape(N * T, H), weight, ids.reshape(N * T),
                                               float(temperature), int(chunk), bool(with_entropy))
    out = {"logprobs": logprobs.view(N, T)}
    if with_entropy:
        out["entropy"] = entropy.view(N, T)
    return out


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor]:
    """The transformer body (ends with the final norm) and the LM head weight of a HF causal LM.

    PEFT injects LoRA layers in place, so the base model's decoder still runs the adapters
    (and `with model.disable_adapter():` still disables them): calling it is the same policy.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
    head = base.get_output_embeddings()
    # The fused path reproduces `logits = head(h)` only for a plain bias-free Linear head; a
    # LoRA-wrapped head, a bias, or logit softcapping/scaling (Gemma, Granite) would be dropped.
    if not isinstance(head, torch.nn.Linear) or head.bias is not None:
        raise ValueError(f"completion_logprobs needs a bias-free nn.Linear LM head, got {type(head).__name__}")
    text_config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    if getattr(text_config, "final_logit_softcapping", None) or getattr(text_config, "logit_scale", None):
        raise ValueError("models with logit softcapping or scaling are not supported")
    return decoder, head.weight


def completion_logprobs(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                        completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                        temperature: float = 1.0, chunk: int = 1024,
                        with_entropy: bool = False,
                        allowed_ids: torch.Tensor | None = None,
                        target_ids: torch.Tensor | None = None,
                        input_groups: torch.Tensor | None = None,
                        prompt_groups: torch.Tensor | None = None,
                        allowed_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Log-probs of the completion tokens under `model` (plain or PEFT-wrapped HF causal LM).

    prompt_ids/prompt_mask [N, P] (left-padded), completion_ids/completion_mask [N, C]
    (right-padded). Returns {"logprobs": [N, C]} (+ "entropy": [N, C]); values at masked
    completion positions are meaningless and must be masked by the caller.

    `allowed_ids` [K]: the policy is the softmax over these K tokens only — the distribution a
    constrained decoder samples from (e.g. the action verbalizer's `0`/`1` slots). Log-probs
    and entropy are then over K, exactly on-policy for the constrained sampler; a completion
    token outside the set gets a meaningless value (such positions carry no loss).
    `allowed_mask` [N, K] bool narrows it per row: row i's policy is the softmax over the allowed
    tokens where the mask is true (a reranking prompt with fewer candidates than labels).

    `target_ids` [N, C]: score these tokens instead of the fed `completion_ids` (factorised slot
    sampling feeds placeholders and scores the sampled decisions). `input_groups` [N]: rows with
    the same value have identical inputs (prompt and completion ids), so the decoder runs once per
    distinct value and its hidden states are shared (gradients add up through the indexing).

    `prompt_groups` [N]: rows with the same value share their prompt (GRPO's G samples of one
    prompt) but not their completions. The prompt is then encoded once per group: one forward
    over the distinct prompts fills a KV cache, the cache is indexed out to the N rows (gradients
    flow back through it to the prompt pass), and only the completions run per row. For a
    1,024-token prompt and 32 new tokens that is G times fewer prompt tokens through the model,
    forward and backward. Not combined with gradient checkpointing (transformers turns the cache
    off under it): such a model takes the per-row path.
    """
    decoder, weight = decoder_and_head(model)
    targets = completion_ids if target_ids is None else target_ids.to(completion_ids.device)
    inverse = None
    if input_groups is not None:
        inverse, first = group_index(input_groups)                              # [N] row -> distinct input, [U]
        prompt_ids, prompt_mask = prompt_ids[first], prompt_mask[first]
        completion_ids, completion_mask = completion_ids[first], completion_mask[first]
        inverse = inverse.to(completion_ids.device)
    if prompt_groups is not None and not (getattr(decoder, "gradient_checkpointing", False) and decoder.training):
        hidden = _shared_prompt_hidden(decoder, prompt_ids, prompt_mask, completion_ids, completion_mask, prompt_groups)
        return _score(hidden, weight, targets, temperature, chunk, with_entropy, allowed_ids,
                      allowed_mask=allowed_mask)
    P = prompt_ids.shape[1]
    # The last completion token predicts nothing we score, so it is not fed at all.
    input_ids = torch.cat([prompt_ids, completion_ids], dim=1)[:, :-1]          # [N, P+C-1]
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)[:, :-1]   # [N, P+C-1]
    # Left padding: positions count real tokens only, as in `generate`, so that the first
    # prompt token is position 0 whatever the padding (RoPE sees the sampled positions).
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)         # [N, P+C-1]
    out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                  use_cache=False)
    hidden = out.last_hidden_state[:, P - 1:]     # [N, C, H]: position P-1+t predicts completion token t
    return _score(hidden, weight, targets, temperature, chunk, with_entropy, allowed_ids, inverse, allowed_mask)


def group_index(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inverse [N]: each row's distinct group 0..U-1, first [U]: the first row of each group)."""
    _, inverse = torch.unique(groups, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(inverse), dtype=torch.long)
    return inverse, first.scatter_reduce(0, inverse, torch.arange(len(inverse)), reduce="amin")


def _shared_prompt_hidden(decoder, prompt_ids, prompt_mask, completion_ids, completion_mask,
                          prompt_groups: torch.Tensor) -> torch.Tensor:
    """[N, C, H] final hidden states predicting each completion token, each distinct prompt encoded once."""
    inverse, first = group_index(prompt_groups)                                 # [N] row -> distinct prompt, [U]
    inverse = inverse.to(prompt_ids.device)
    p_mask = prompt_mask[first]                                                  # [U, P]
    prompt = decoder(input_ids=prompt_ids[first], attention_mask=p_mask,
                     position_ids=(p_mask.long().cumsum(-1) - 1).clamp(min=0), use_cache=True)
    last = prompt.last_hidden_state[:, -1][inverse]                              # [N, H] predicts token 0
    if completion_ids.shape[1] == 1:
        return last[:, None]
    cache = prompt.past_key_values
    cache.batch_select_indices(inverse)                                          # [U, ...] -> [N, ...], differentiable
    # The last completion token predicts nothing we score, so it is not fed at all.
    mask = torch.cat([prompt_mask, completion_mask], dim=1)[:, :-1]              # [N, P+C-1]
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, prompt_ids.shape[1]:]   # [N, C-1], as in the per-row path
    rest = decoder(input_ids=completion_ids[:, :-1], attention_mask=mask, position_ids=positions,
                   past_key_values=cache, use_cache=True)
    return torch.cat([last[:, None], rest.last_hidden_state], dim=1)            # [N, C, H]


def _score(hidden, weight, targets, temperature, chunk, with_entropy, allowed_ids,
           inverse: torch.Tensor | None = None, allowed_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Log-probs (and entropy) of `targets` from `hidden` [N or U, C, H]; `inverse` [N] maps rows to
    the distinct inputs when hidden holds one entry per distinct input; `allowed_mask` [N, K]: the
    allowed tokens each row may choose among (a subset of allowed_ids)."""
    if allowed_ids is None:
        if inverse is not None:
            hidden = hidden[inverse]              # [U, C, H] -> [N, C, H]
        return chunked_token_logprobs(hidden, weight, targets, temperature, chunk, with_entropy)
    allowed_ids = allowed_ids.to(targets.device)
    # Index of each completion token within the allowed set (0 for tokens outside it).
    match = targets.unsqueeze(-1) == allowed_ids                                 # [N, C, K]
    restricted = match.long().argmax(-1)                                         # [N, C]
    if inverse is None and allowed_mask is None:
        return chunked_token_logprobs(hidden, weight[allowed_ids], restricted, temperature, chunk, with_entropy)
    # A small allowed set: all K log-probs once per distinct input ([U, C, K]), then each row picks
    # its own; never a [N, C, H] copy of the hidden states (G times the work).
    U, C = hidden.shape[:2]
    full_entropy = with_entropy and allowed_mask is None
    per_k = [chunked_token_logprobs(hidden, weight[allowed_ids], torch.full((U, C), k, device=hidden.device),
                                    temperature, chunk, with_entropy=full_entropy and k == 0)
             for k in range(len(allowed_ids))]
    rows = inverse if inverse is not None else torch.arange(U, device=hidden.device)
    table = torch.stack([o["logprobs"] for o in per_k], dim=-1)[rows]          # [N, C, K]
    entropy = per_k[0]["entropy"][rows] if full_entropy else None               # [N, C]
    if allowed_mask is not None:
        # log-softmax over the row's own choices: log p_k - logsumexp_{j allowed} log p_j
        allowed = allowed_mask.to(table.device).bool()[:, None, :]              # [N, 1, K]
        table = table.masked_fill(~allowed, float("-inf"))
        table = table - torch.logsumexp(table, dim=-1, keepdim=True)
        if with_entropy:
            entropy = -(table.exp() * table.masked_fill(~allowed, 0.0)).sum(-1)  # [N, C]
    result = {"logprobs": table.gather(-1, restricted.unsqueeze(-1)).squeeze(-1)}   # [N, C]
    if with_entropy:
        result["entropy"] = entropy
    return result
