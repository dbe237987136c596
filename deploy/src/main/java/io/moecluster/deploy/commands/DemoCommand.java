package io.moecluster.deploy.commands;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.deploy.cli.ProgressBars;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe demo}: the newcomer's first run. Writes a small random model if there is none yet,
 * then streams a completion from it.
 */
@Command(name = "demo", description = "Write the small demo model if absent, then stream a completion from it.")
public final class DemoCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--models-dir", paramLabel = "DIR",
      description = "where demo models live (default: $MOE_HOME/models, else ./models)")
  Path modelsDir;

  @Option(names = "--preset", description = "tiny, small or bench (default: ${DEFAULT-VALUE})", defaultValue = "small",
      converter = PresetConverter.class)
  Preset preset;

  @Option(names = "--prompt", description = "prompt text (default: ${DEFAULT-VALUE})",
      defaultValue = "We hold these truths to be self-evident, that")
  String prompt;

  @Option(names = "--max-tokens", description = "tokens to generate (default: ${DEFAULT-VALUE})", defaultValue = "48")
  int maxTokens;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    Path dir = modelsDir().resolve(preset.cliName());
    if (!Files.isRegularFile(dir.resolve("config.json"))) {
      err.printf("moe demo: writing the %s demo model to %s ...%n", preset.cliName(), dir);
      err.flush();
      CheckpointWriter.write(CheckpointSpec.of(preset, DType.BF16, 42), dir);
    }
    try (LocalGenerator generator = LocalGenerator.open(dir, 0)) {
      try (var bar = ProgressBars.bytes("loading weights", generator.checkpointBytes())) {
        generator.warmUp(bar::stepTo);
      }
      var c = generator.config();
      err.printf(Locale.ROOT, "moe demo: %s, %d layers, %d experts (top-%d), hidden %d, vocab %d%n",
          c.family().modelType(), c.numLayers(), c.numExperts(), c.topK(), c.hiddenSize(), c.vocabSize());
      err.println("moe demo: the weights are random, so the text is too; the tokens are exactly reproducible.");
      err.flush();
      GenerationRequest request = new GenerationRequest(generator.tokenizer().encode(prompt),
          new SamplingParams(0.8f, 0, 0.95f, 0f, 1.1f, 7), maxTokens, List.of(), true);
      out.print(prompt);
      GenerationResult result = generator.generate(request, event -> {
        out.print(event.textDelta());
        out.flush();
      });
      out.println();
      out.flush();
      err.printf(Locale.ROOT, "moe demo: prompt %d tokens at %.1f tokens/s, %d tokens generated at %.1f tokens/s%n",
          result.promptIds().length, result.prefillTokensPerSecond(), result.generatedIds().length,
          result.decodeTokensPerSecond());
      err.flush();
    }
    return 0;
  }

  private Path modelsDir() {
    if (modelsDir != null) {
      return modelsDir;
    }
    String home = System.getenv("MOE_HOME");
    return home != null && !home.isBlank() ? Path.of(home, "models") : Path.of("models");
  }
}
