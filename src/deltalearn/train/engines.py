"""How a training step is distributed: one interface, three engines, the same code on a CPU and a GPU.

- `accelerate`: one process, or DDP over many (gloo on the CPU, NCCL on GPUs) through HF accelerate.
- `deepspeed`: ZeRO stage 1, 2 or 3, initialised here with `deepspeed.initialize`, as OpenRLHF (the
  paper's training code) does, not through accelerate's plugin: accelerate refuses DeepSpeed on a CPU,
  so its path could never be run before a GPU is at hand. On a CPU, DeepSpeed's CPU accelerator talks gloo.
- `fsdp2`: torch's `fully_shard` on every decoder layer and on the whole policy, over a device mesh of
  all processes (a CPU mesh over gloo without a GPU).
Which one: the recipe's `sharding` (with `zero_stage`), or the accelerate launch config's DeepSpeed /
FSDP choice, which is read from the environment accelerate sets and routed to the same engines.

The loop calls, per step: `micro(last)` around each micro-batch's forward and backward, `backward`,
then `step` (clip, optimizer, scheduler); `reduce_sum` for metrics; `save`/`load` for checkpoints;
`full_state_dict` for the final weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import torch

from ..io import write_text_atomic


def choose(cfg) -> tuple[str, int]:
    """(engine, ZeRO stage) from the recipe, or from an accelerate launch config's environment."""
    if cfg.sharding != "none":
        return cfg.sharding, cfg.zero_stage
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
        return "deepspeed", int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", cfg.zero_stage))
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        return "fsdp2", 3
    return "accelerate", 0


def make_engine(cfg, accum: int):
    kind, stage = choose(cfg)
    if kind == "accelerate":
        return AccelerateEngine(cfg, accum)
    _init_distributed()
    return (DeepSpeedEngine if kind == "deepspeed" else FSDP2Engine)(cfg, accum, stage)


def _init_distributed() -> None:
    """One process group for the sharded engines: from torchrun's (or accelerate launch's) environment,
    or a group of one when the script was started on its own."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29400 + os.getpid() % 1000))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend="nccl" if cuda else "gloo")


class AccelerateEngine:
    """One process or DDP through accelerate (the path every CPU benchmark of this project measured)."""

    sharded = False

    def __init__(self, cfg, accum: int):
        from accelerate import Accelerator, PartialState
        from accelerate.state import AcceleratorState

        # One process may train several runs (a study's conditions), each with its own precision:
        # accelerate keeps one global state, so start each run from a fresh one (the process group stays).
        AcceleratorState._reset_state()
        # Without a GPU, ask for CPU explicitly: accelerate then runs several launched processes as
        # MULTI_CPU over gloo instead of treating each one as a lone process.
        on_cpu = not torch.cuda.is_available()
        PartialState(cpu=on_cpu)
        # Master weights stay float32 (an update of lr 5e-8 vanishes in bfloat16 weights); `dtype: bfloat16`
        # means bf16 compute through accelerate's mixed precision.
        self.acc = Accelerator(gradient_accumulation_steps=accum, cpu=on_cpu,
                               mixed_precision="bf16" if cfg.dtype == "bfloat16" else "no")
        self.cfg, self.scheduler = cfg, None
        from accelerate.utils import DistributedType

        self.plain_process = self.acc.distributed_type == DistributedType.NO

    main = property(lambda self: self.acc.is_main_process)
    world = property(lambda self: self.acc.num_processes)
    rank = property(lambda self: self.acc.process_index)
    device = property(lambda self: self.acc.device)

    def barrier(self) -> None:
        self.acc.wait_for_everyone()

    def main_first(self):
        return self.acc.main_process_first()

    def autocast(self):
        return self.acc.autocast()

    def prepare(self, wrapper, optimizer, scheduler):
        self.scheduler = scheduler
        self.wrapper, self.optimizer = self.acc.prepare(wrapper, optimizer)
        return self.wrapper

    def micro(self, last: bool):
        return self.acc.accumulate(self.wrapper)

    def no_sync(self):
        return self.acc.no_sync(self.wrapper)

    def backward(self, loss) -> None:
        self.acc.backward(loss)

    def step(self, params) -> float | None:
        """Clip, update, advance the schedule (stepped once per optimizer step, by us), zero the gradients."""
        if self.cfg.max_grad_norm:
            grad_norm = self.acc.clip_grad_norm_(params, self.cfg.max_grad_norm)
        else:
            grad_norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm) if grad_norm is not None else None

    def reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        return self.acc.reduce(t.to(self.device), "sum").cpu() if self.world > 1 else t

    def unwrap(self):
        return self.acc.unwrap_model(self.wrapper)

    def save(self, root: Path, step: int, keep: int) -> None:
        from .checkpoint import save_checkpoint

        self.barrier()
        if self.main:
            save_checkpoint(root, step, self.unwrap(), self.optimizer, self.scheduler, {"step": step}, keep)
        self.barrier()

    def load(self, path: Path) -> int:
        from .checkpoint import load_checkpoint

        return load_checkpoint(path, self.unwrap(), self.optimizer, self.scheduler)["step"]

    def full_state_dict(self):
        return None  # the unwrapped model holds every weight: save it as it is


class _Sharded:
    """What the DeepSpeed and FSDP2 engines share: torch.distributed directly."""

    sharded = True
    plain_process = False

    def __init__(self, cfg, accum: int, stage: int):
        import torch.distributed as dist

        self.cfg, self.accum, self.stage = cfg, accum, stage
        self.dist = dist
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.main = self.rank == 0
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{torch.cuda.current_device()}") if cuda else torch.device("cpu")

    def barrier(self) -> None:
        self.dist.barrier()

    @contextlib.contextmanager
    def main_first(self):
        if not self.main:
            self.barrier()
        yield
        if self.main:
            self.barrier()

    def reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        t = t.to(self.device)
        self.dist.all_reduce(t)
        return t.cpu()

    def _save_dir(self, root: Path, step: int, keep: int, write) -> None:
        """Every process writes its shard into `.step-N.partial`; the main one renames it, points
        `latest` at it and prunes, as for a plain run (a kill leaves only a hidden partial folder)."""
        from .checkpoint import _prune

        final, tmp = root / f"step-{step:07d}", root / f".step-{step:07d}.partial"
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.barrier()
        write(tmp)
        self.barrier()
        if self.main:
            torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
            (tmp / "state.json").write_text(json.dumps({"step": step}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            write_text_atomic(root / "latest", final.name + "\n")
            _prune(root, keep)
        self.barrier()


class DeepSpeedEngine(_Sharded):
    def autocast(self):
        return contextlib.nullcontext()  # DeepSpeed's bf16 mode casts the model itself

    def prepare(self, wrapper, optimizer, scheduler):
        import deepspeed

        cfg = self.cfg
        config = {
            "train_micro_batch_size_per_gpu": cfg.micro_batch_size, "gradient_accumulation_steps": self.accum,
            "train_batch_size": cfg.micro_batch_size * self.accum * self.world,
            "zero_optimization": {"stage": self.stage, "stage3_gather_16bit_weights_on_model_save": True},
            "bf16": {"enabled": cfg.dtype == "bfloat16"}, "gradient_clipping": cfg.max_grad_norm or 0.0,
            "zero_allow_untested_optimizer": True, "steps_per_print": 10**9, "wall_clock_breakdown": False,
        }
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=wrapper, optimizer=optimizer, lr_scheduler=scheduler, config=config, dist_init_required=False)
        self.wrapper = self.engine
        return self.engine

    @contextlib.contextmanager
    def micro(self, last: bool):
        """The engine counts micro-batches: every one but the last is closed with its (non-updating)
        `step`; the last one's `step` is the update, taken in `step` after the loop's finite-loss check."""
        yield
        if not last:
            self.engine.step()

    def no_sync(self):
        return contextlib.nullcontext()

    def backward(self, loss) -> None:
        self.engine.backward(loss)  # divides by gradient_accumulation_steps, as accelerate does

    def step(self, params) -> float | None:
        self.engine.step()  # the accumulation boundary: clip, update, schedule, zero the gradients
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else None

    def unwrap(self):
        return self.engine.module

    def save(self, root: Path, step: int, keep: int) -> None:
        self._save_dir(root, step, keep, lambda tmp: self.engine.save_checkpoint(str(tmp), tag="engine"))

    def load(self, path: Path) -> int:
        self.engine.load_checkpoint(str(path), tag="engine")
        return int(json.loads((path / "state.json").read_text())["step"])

    def full_state_dict(self):
        if self.stage == 3:  # gathered from every process's partition, on the main one
            return self.engine._zero3_consolidated_16bit_state_dict()
        return self.engine.module.state_dict() if self.main else None


class FSDP2Engine(_Sharded):
    def shard(self, wrapper, lm) -> None:
        """fully_shard each decoder layer, then the whole policy (embeddings, final norm, head)."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(self.device.type, (self.world,))
        mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if self.cfg.dtype == "bfloat16" else MixedPrecisionPolicy())
        for layer in lm.get_decoder().layers:
            fully_shard(layer, mesh=mesh, mp_policy=mp)
        fully_shard(wrapper, mesh=mesh, mp_policy=mp)

    def autocast(self):
        return contextlib.nullcontext()  # the mixed-precision policy casts

    def prepare(self, wrapper, optimizer, scheduler):
        self.wrapper, self.optimizer, self.scheduler = wrapper, optimizer, scheduler
        return wrapper

    @contextlib.contextmanager
    def micro(self, last: bool):
        self.wrapper.set_requires_gradient_sync(last)  # reduce-scatter once per optimizer step
        yield

    def no_sync(self):
        return self.micro(False)

    def backward(self, loss) -> None:
        (loss / self.accum).backward()

    def step(self, params) -> float | None:
        if self.cfg.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.max_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def unwrap(self):
        return self.wrapper

    def _state(self):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        return {"model": get_model_state_dict(self.wrapper), "optim": get_optimizer_state_dict(self.wrapper, self.optimizer)}

    def save(self, root: Path, step: int, keep: int) -> None:
        import torch.distributed.checkpoint as dcp

        self._save_dir(root, step, keep, lambda tmp: dcp.save(self._state(), checkpoint_id=str(tmp / "dcp")))

    def load(self, path: Path) -> int:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        state = self._state()
        dcp.load(state, checkpoint_id=str(path / "dcp"))
        set_model_state_dict(self.wrapper, state["model"])
        set_optimizer_state_dict(self.wrapper, self.optimizer, state["optim"])
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
        return int(json.loads((path / "state.json").read_text())["step"])

    def full_state_dict(self):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.wrapper, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.main else None
