package io.moecluster.deploy.commands;

import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import io.moecluster.deploy.cluster.Gateways;
import io.moecluster.deploy.cluster.LocalCluster;
import io.moecluster.deploy.cluster.Placement;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.ModelInfo;
import io.moecluster.proto.v1.SamplingParams;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe demo}: the newcomer's first run. Writes a small random model if there is none yet,
 * starts a local cluster (a gateway+router JVM and two expert JVMs), streams a completion through
 * the gateway, shows which node holds which experts, and stops everything.
 */
@Command(name = "demo",
    description = "Write the small demo model if absent, start a local cluster with 2 expert JVMs, stream a completion"
        + " through gRPC, show the expert placement, stop.")
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

  @Option(names = "--expert-nodes", description = "expert JVMs (default: ${DEFAULT-VALUE})", defaultValue = "2")
  int expertNodes;

  @Option(names = "--grpc-port", description = "the gateway's gRPC port, 0 picks a free one (default: ${DEFAULT-VALUE})",
      defaultValue = "0")
  int grpcPort;

  @Option(names = "--base-port", description = "cluster port of the seed, 0 picks free ports (default: ${DEFAULT-VALUE})",
      defaultValue = "0")
  int basePort;

  @Override
  public Integer call() throws InterruptedException {
    if (maxTokens < 1) {
      throw new IllegalArgumentException("--max-tokens must be >= 1, got " + maxTokens);
    }
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    Path dir = modelsDir().resolve(preset.cliName());
    if (!Files.isRegularFile(dir.resolve("config.json"))) {
      err.printf("moe demo: writing the %s demo model to %s ...%n", preset.cliName(), dir);
      err.flush();
      CheckpointWriter.write(CheckpointSpec.of(preset, DType.BF16, 42), dir);
    }
    LocalCluster.Options options = new LocalCluster.Options(dir, expertNodes, grpcPort, basePort, Map.of(),
        Duration.ofSeconds(180), Duration.ofSeconds(60));
    try (LocalCluster cluster = LocalClusterCommand.startServing(options, System.err, err)) {
      ModelInfo info = cluster.modelInfo();
      err.printf(Locale.ROOT, "moe demo: %s, %d layers, %d experts (top-%d), hidden %d, vocab %d, served at %s%n",
          info.getModelType(), info.getNumLayers(), info.getNumExperts(), info.getExpertsPerToken(),
          info.getHiddenSize(), info.getVocabSize(), cluster.gateway());
      err.println("moe demo: the weights are random, so the text is too; the tokens are exactly reproducible.");
      err.flush();
      GenerateRequest request = GenerateRequest.newBuilder()
          .setText(prompt)
          .setSampling(SamplingParams.newBuilder().setTemperature(0.8f).setTopK(0).setTopP(0.95f).setMinP(0f)
              .setRepetitionPenalty(1.1f).setSeed(7))
          .setMaxTokens(maxTokens)
          .setIgnoreEos(true)
          .build();
      ManagedChannel channel = Gateways.channel(cluster.gateway());
      RemoteGeneration.Outcome outcome;
      try {
        out.print(prompt);
        outcome = RemoteGeneration.stream(InferenceGrpc.newBlockingStub(channel), request, null, text -> {
          out.print(text);
          out.flush();
        });
        out.println();
        out.flush();
      } catch (StatusRuntimeException e) {
        out.println();
        return RemoteGeneration.report(e, err);
      } finally {
        Gateways.close(channel);
      }
      err.printf(Locale.ROOT, "moe demo: prompt %d tokens in %.0f ms to the first token, %d tokens generated at %.1f tokens/s%n",
          outcome.promptTokens(), outcome.prefillNanos() / 1e6, outcome.generatedIds().length,
          outcome.toResult().decodeTokensPerSecond());
      for (String line : Placement.describe(cluster.modelInfo(), cluster::nameOf)) {
        out.println(line);
      }
      out.flush();
      err.println("moe demo: stopping the cluster");
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
