"""TRL 1.16 as the oracle: same tiny model, same batch, same loss (1e-5), and the same tokens."""

import copy
import math

import pytest
import torch

from deltalearn.train import losses as L
from deltalearn.train.batching import collate, tokenize_dataset
from deltalearn.scoring.logprobs import response_logps
from deltalearn.train.loop import pair_losses
from deltalearn.train.config import TrainConfig
from conftest import build_model, build_tokenizer


ROWS = [
    {"prompt": [{"role": "user", "content": "Explain why the sky is blue."}],
     "chosen": [{"role": "assistant", "content": "Because of Rayleigh scattering of sunlight."}],
     "rejected": [{"role": "assistant", "content": "blue blue"}]},
    {"prompt": [{"role": "user", "content": "What is the capital of France?"}],
     "chosen": [{"role": "assistant", "content": "Paris is the capital of France."}],
     "rejected": [{"role": "assistant", "content": "The quick brown fox jumps over the lazy dog, I think."}]},
    {"prompt": [{"role": "user", "content": "Write a poem"}],
     "chosen": [{"role": "assistant", "content": "The sea at night\nis dark and bright."}],
     "rejected": [{"role": "assistant", "content": "poem"}]},
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = tmp_path_factory.mktemp("oracle")
    tok = build_tokenizer(path)
    policy = build_model(path, tok, seed=0)
    ref = build_model(tmp_path_factory.mktemp("oracle-ref"), tok, seed=1)  # a different reference, so z != 0
    return tok, policy, ref


def ours(tok, policy, ref, method, beta, gamma=0.5):
    pairs = tokenize_dataset(tok, ROWS)
    mb = collate(pairs, tok.pad_token_id)
    k = len(pairs)
    pol, lens = response_logps(policy, mb.input_ids, mb.attention_mask, mb.loss_mask, chunk=7)
    with torch.no_grad():
        refs, _ = response_logps(ref, mb.input_ids, mb.attention_mask, mb.loss_mask)
    cfg = TrainConfig(data="x", method=method, beta=beta, gamma=gamma)
    loss, _, _ = pair_losses(cfg, pol[:k], pol[k:], lens[:k], lens[k:], refs[:k], refs[k:])
    return loss.mean(), pairs


def trl_dpo(tok, policy, ref, loss_type, beta, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(tmp_path), report_to=[], loss_type=[loss_type], beta=beta, max_length=None,
                     use_cpu=True, bf16=False, per_device_train_batch_size=len(ROWS))
    trainer = DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=Dataset.from_list(ROWS), processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    return trainer, trainer.compute_loss(trainer.model, batch)


@pytest.mark.parametrize("method, loss_type, beta", [("dpo", "sigmoid", 0.1), ("dpo_norm", "sigmoid_norm", 5.0), ("ipo", "ipo", 0.5)])
def test_loss_and_gradient_equal_trl_dpo_trainer(models, tmp_path, method, loss_type, beta):
    tok, policy, ref = models
    p_ours, p_trl = copy.deepcopy(policy), copy.deepcopy(policy)
    loss, pairs = ours(tok, p_ours, ref, method, beta)
    trainer, trl_loss = trl_dpo(tok, p_trl, copy.deepcopy(ref), loss_type, beta, tmp_path)
    # same tokens as TRL's data preparation
    for tp, ex in zip(pairs, trainer.train_dataset):
        assert (tp.prompt, tp.chosen, tp.rejected) == (ex["prompt_ids"], ex["chosen_ids"], ex["rejected_ids"])
    assert abs(loss.item() - math.log(2)) > 1e-3  # the reference differs from the policy: a real test
    torch.testing.assert_close(loss, trl_loss.to(loss), atol=1e-5, rtol=0)
    loss.backward()
    trl_loss.backward()
    for (n, a), (_, b) in zip(p_ours.named_parameters(), trainer.model.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_simpo_equals_trl_cpo_simpo(models, tmp_path):
    from datasets import Dataset
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    tok, policy, _ = models
    beta, gamma = 2.0, 0.5
    args = CPOConfig(output_dir=str(tmp_path), report_to=[], loss_type="simpo", cpo_alpha=0.0, simpo_gamma=gamma, beta=beta,
                     max_length=512, use_cpu=True, bf16=False, per_device_train_batch_size=len(ROWS), remove_unused_columns=False)
    trainer = CPOTrainer(model=copy.deepcopy(policy), args=args, train_dataset=Dataset.from_list(ROWS), processing_class=tok)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(ROWS))])
    trl_loss = trainer.compute_loss(trainer.model, batch)
    # the same token sequences through our log-prob and loss code
    k = len(ROWS)
    T = max(batch["chosen_input_ids"].shape[1], batch["rejected_input_ids"].shape[1])
    pad = lambda t, v: torch.nn.functional.pad(t, (0, T - t.shape[1]), value=v)  # noqa: E731
    ids = torch.cat([pad(batch["chosen_input_ids"], tok.pad_token_id), pad(batch["rejected_input_ids"], tok.pad_token_id)])
    att = torch.cat([pad(batch["chosen_attention_mask"], 0), pad(batch["rejected_attention_mask"], 0)])
    labels = torch.cat([pad(batch["chosen_labels"], -100), pad(batch["rejected_labels"], -100)])
    loss_mask = (labels != -100).long()
    pol, lens = response_logps(copy.deepcopy(policy), ids, att, loss_mask, chunk=5)
    loss, _, _ = L.simpo_loss(pol[:k], pol[k:], lens[:k], lens[k:], beta, gamma)
    torch.testing.assert_close(loss.mean(), trl_loss.to(loss), atol=1e-5, rtol=0)

