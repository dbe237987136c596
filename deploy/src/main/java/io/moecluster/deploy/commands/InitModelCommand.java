package io.moecluster.deploy.commands;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.ModelFamily;
import io.moecluster.core.tensor.DType;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe init-model}: writes a random checkpoint in the Hugging Face layout. */
@Command(
    name = "init-model",
    description = "Write a random MoE checkpoint in the Hugging Face layout (for tests, demos, benchmarks).")
public final class InitModelCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--preset", description = "tiny, small or bench (default: ${DEFAULT-VALUE})", defaultValue = "small",
      converter = PresetConverter.class)
  Preset preset;

  @Option(names = "--family", description = "mixtral, qwen2_moe, qwen3_moe or olmoe (default: ${DEFAULT-VALUE})",
      defaultValue = "mixtral", converter = FamilyConverter.class)
  ModelFamily family;

  @Option(names = "--dtype", description = "f32 or bf16 (default: ${DEFAULT-VALUE})", defaultValue = "bf16",
      converter = WeightDTypeConverter.class)
  DType dtype;

  @Option(names = "--seed", description = "random seed; the same seed writes the same bytes (default: ${DEFAULT-VALUE})",
      defaultValue = "42")
  long seed;

  @Option(names = "--shards", description = "number of safetensors files (default: ${DEFAULT-VALUE})", defaultValue = "1")
  int shards;

  @Option(names = "--tokenizer", paramLabel = "DIR",
      description = "copy the tokenizer of this model directory instead of training one; the vocabulary follows it")
  Path tokenizer;

  @Option(names = "--out", paramLabel = "DIR", required = true, description = "output directory")
  Path out;

  @Override
  public Integer call() {
    if (shards < 1) {
      throw new IllegalArgumentException("--shards must be >= 1, got " + shards);
    }
    long start = System.nanoTime();
    ModelConfig c = CheckpointWriter.write(new CheckpointSpec(preset, family, dtype, seed, shards, tokenizer), out);
    PrintWriter err = spec.commandLine().getErr();
    err.printf("wrote %s %s checkpoint (%s, %d layers, %d experts, top-%d, hidden %d, vocab %d) to %s in %.1f s%n",
        preset.cliName(), family.modelType(), dtype.name().toLowerCase(java.util.Locale.ROOT), c.numLayers(),
        c.numExperts(), c.topK(), c.hiddenSize(), c.vocabSize(), out, (System.nanoTime() - start) / 1e9);
    err.flush();
    return 0;
  }
}
