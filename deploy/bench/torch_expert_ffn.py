#!/usr/bin/env python3
"""PyTorch's matmul on the expert FFN shapes that `moe bench-expert` measures, on the same GPU.

The expert FFN is three matrix products: gate and up ([batch, hidden] x [hidden, ffn]) and down
([batch, ffn] x [ffn, hidden]). This times them with torch.matmul (cuBLAS, tensor cores for
BF16) and prints the TFLOP/s, to set beside the "batch N" line of `moe bench-expert`, and the
batch-1 time beside its "batch 1" line. Needs torch with CUDA.

  python3 deploy/bench/torch_expert_ffn.py --hidden 1024 --ffn 2816 --batch 256 --dtype bf16
"""
import argparse

import torch


def ffn(x, w1, w3, w2):
    return torch.matmul(torch.nn.functional.silu(x @ w1) * (x @ w3), w2)


def expert_ffn_seconds(x, experts, repetitions):
    """Device time of one FFN (three matmuls and the SwiGLU) per expert, experts run in turn.

    The FFNs are captured once in a CUDA graph and the graph is replayed, so the time is the
    GPU's and not Python's launch overhead (which is larger than the work at these sizes); the
    median of the replays is reported. Returns (graph seconds, eager seconds) per FFN.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up: cuBLAS handles and workspaces before capture
        for _ in range(3):
            for w in experts:
                ffn(x, *w)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for w in experts:
            ffn(x, *w)
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repetitions):
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / len(experts))
    times.sort()
    start.record()
    for w in experts:
        ffn(x, *w)
    end.record()
    torch.cuda.synchronize()
    return times[len(times) // 2], start.elapsed_time(end) / 1e3 / len(experts)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--ffn", type=int, default=2816)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    p.add_argument("--experts", type=int, default=16, help="distinct experts run in turn (beyond the L2 cache)")
    p.add_argument("--repetitions", type=int, default=50, help="timed graph replays")
    a = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch_expert_ffn: no CUDA device visible to torch")
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    dev = torch.device("cuda")
    # Stored transposed ([in, out]) so x @ w is the checkpoint's [out, in] product.
    experts = [tuple(torch.randn(i, o, device=dev, dtype=dtype) / i ** 0.5
                     for i, o in ((a.hidden, a.ffn), (a.hidden, a.ffn), (a.ffn, a.hidden)))
               for _ in range(a.experts)]
    flops_per_row = 2 * 3 * a.hidden * a.ffn
    print(f"device:           {torch.cuda.get_device_name(dev)} (torch {torch.__version__})")
    for batch in sorted({1, a.batch}):
        x = torch.randn(batch, a.hidden, device=dev, dtype=dtype)
        s, eager = expert_ffn_seconds(x, experts, a.repetitions)
        print(f"batch {batch}:".ljust(18) + f"{s * 1e6:.1f} us per expert FFN -> {flops_per_row * batch / s / 1e12:.2f} TFLOP/s"
              f" (CUDA graph, median of {a.repetitions}; eager launches {eager * 1e6:.1f} us)")


if __name__ == "__main__":
    main()
