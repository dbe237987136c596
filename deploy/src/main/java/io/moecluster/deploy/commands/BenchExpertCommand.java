package io.moecluster.deploy.commands;

import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import io.moecluster.deploy.cli.UserError;
import io.moecluster.expert.cuda.CudaExpertBench;
import io.moecluster.expert.cuda.CudaProbe;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe bench-expert}: the GPU expert backend's speed on one device, on one preset's expert shapes. */
@Command(name = "bench-expert",
    description = {"Measure the GPU expert backend on one NVIDIA GPU: the batch-1 expert FFN time against the"
        + " device's memory bandwidth bound, TFLOP/s at a prefill batch, and the upload of one expert (pinned vs"
        + " pageable host memory). Compare the TFLOP/s with deploy/bench/torch_expert_ffn.py on the same GPU.",
        "Example: moe bench-expert --preset bench --dtype bf16 --batch 256"})
public final class BenchExpertCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--preset", description = "expert shapes of tiny, small or bench (default: ${DEFAULT-VALUE})",
      defaultValue = "bench", converter = PresetConverter.class)
  Preset preset;

  @Option(names = "--dtype", description = "f32 or bf16 weights (default: ${DEFAULT-VALUE})", defaultValue = "bf16",
      converter = WeightDTypeConverter.class)
  DType dtype;

  @Option(names = "--batch", description = "rows of the prefill measurement (default: ${DEFAULT-VALUE})",
      defaultValue = "256")
  int batch;

  @Option(names = "--experts", description = "distinct experts run in turn, so weights come from device memory and not"
      + " the L2 cache (default: ${DEFAULT-VALUE})", defaultValue = "16")
  int experts;

  @Option(names = "--repetitions", description = "timed passes over the experts (default: ${DEFAULT-VALUE})",
      defaultValue = "50")
  int repetitions;

  @Option(names = "--device", description = "CUDA device ordinal (default: ${DEFAULT-VALUE})", defaultValue = "0")
  int device;

  @Override
  public Integer call() {
    if (batch < 1 || experts < 1 || repetitions < 1) {
      throw new UserError("--batch, --experts and --repetitions must be >= 1");
    }
    CudaProbe.Result probe = CudaProbe.probe();
    if (!probe.available()) {
      throw new UserError("bench-expert needs an NVIDIA GPU: " + probe.problem());
    }
    CudaProbe.Device d = probe.devices().stream().filter(x -> x.ordinal() == device).findFirst()
        .orElseThrow(() -> new UserError("--device " + device + ": this machine has " + probe.devices().size()
            + " CUDA device(s): " + probe.devices()));
    var benchSpec = new CudaExpertBench.Spec(preset.hiddenSize, preset.ffnSize, dtype, batch, experts, repetitions);
    CudaExpertBench.Result r = CudaExpertBench.run(d, benchSpec, 32L << 20);
    PrintWriter out = spec.commandLine().getOut();
    out.print(r.format());
    out.printf("compare:          python3 deploy/bench/torch_expert_ffn.py --hidden %d --ffn %d --batch %d%n",
        preset.hiddenSize, preset.ffnSize, batch);
    out.flush();
    return 0;
  }
}
