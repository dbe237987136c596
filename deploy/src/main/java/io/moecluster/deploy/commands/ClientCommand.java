package io.moecluster.deploy.commands;

import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.moecluster.deploy.cluster.Gateways;
import io.moecluster.deploy.cluster.HostPort;
import io.moecluster.deploy.cluster.Placement;
import io.moecluster.proto.v1.GenerateRequest;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.ModelInfo;
import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code moe client}: talks to a running gateway over gRPC. */
@Command(name = "client", description = "Talk to a running moe gateway over gRPC.",
    subcommands = {ClientCommand.Generate.class, ClientCommand.Info.class})
public final class ClientCommand implements Runnable {
  @Spec CommandSpec spec;

  @Override
  public void run() {
    throw new ParameterException(spec.commandLine(), "Missing subcommand: generate or info");
  }

  /** The gateways to talk to: the first, then the others when it fails (generate). */
  static final class Target {
    @Option(names = "--target", paramLabel = "HOST:PORT", defaultValue = "127.0.0.1:50051",
        description = "a gateway's gRPC address (default: ${DEFAULT-VALUE}); repeat it to give generate"
            + " other gateways to resume on when one fails")
    List<String> targets;

    @Mixin ClientSecurityOptions security;

    HostPort hostPort() {
      return hostPorts().getFirst();
    }

    List<HostPort> hostPorts() {
      return targets.stream().map(t -> HostPort.parse(t, "--target")).toList();
    }

    /** A channel to the target with the TLS and API-key flags. */
    ManagedChannel channel() {
      return security.channel(hostPort());
    }
  }

  /** {@code moe client generate}: the same flags and output as {@code moe generate}. */
  @Command(name = "generate", description = "Generate through a gateway; the same flags and output as 'moe generate'.")
  static final class Generate implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin Target target;
    @Mixin GenerationOptions options;

    @Option(names = "--reconnects", paramLabel = "N", defaultValue = "5",
        description = "when the gateway becomes UNAVAILABLE mid-stream, reconnect (to the next --target, with"
            + " backoff) and resume after the tokens already printed, up to N times (default: ${DEFAULT-VALUE};"
            + " 0: fail at once)")
    int reconnects;

    @Override
    public Integer call() throws InterruptedException {
      GenerateRequest request = RemoteGeneration.request(options);
      PrintWriter out = spec.commandLine().getOut();
      PrintWriter err = spec.commandLine().getErr();
      if (reconnects < 0) {
        throw new ParameterException(spec.commandLine(), "--reconnects must be >= 0, got " + reconnects);
      }
      boolean[] any = {false};
      try (GatewayFailover gateways = new GatewayFailover(target.hostPorts(), target.security::channel, reconnects)) {
        int[] promptIds = options.json() ? RemoteGeneration.promptIds(gateways, request, err) : null;
        RemoteGeneration.Outcome outcome = RemoteGeneration.streamResuming(gateways, request, promptIds, text -> {
          if (!options.json()) {
            out.print(text);
            out.flush();
            any[0] = true;
          }
        }, err);
        if (options.json()) {
          out.println(GenerateCommand.toJson(outcome.toResult()));
        } else {
          out.println();
        }
        out.flush();
        RemoteGeneration.printSpeeds(err, outcome);
        return 0;
      } catch (StatusRuntimeException e) {
        if (any[0]) {
          out.println();
          out.flush();
        }
        return RemoteGeneration.report(e, err);
      }
    }
  }

  /** {@code moe client info}: the served model and where its experts are. */
  @Command(name = "info", description = "Show the served model and the expert placement per cluster node.")
  static final class Info implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin Target target;

    @Option(names = "--json", description = "print the ModelInfo message as JSON")
    boolean json;

    @Override
    public Integer call() throws InvalidProtocolBufferException {
      PrintWriter out = spec.commandLine().getOut();
      ManagedChannel channel = target.channel();
      try {
        ModelInfo info = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(30, TimeUnit.SECONDS)
            .getModelInfo(GetModelInfoRequest.getDefaultInstance());
        if (json) {
          out.println(JsonFormat.printer().print(info));
        } else {
          for (String line : describe(info)) {
            out.println(line);
          }
          for (String line : Placement.describe(info, n -> null)) {
            out.println(line);
          }
        }
        out.flush();
        return 0;
      } catch (StatusRuntimeException e) {
        return RemoteGeneration.report(e, spec.commandLine().getErr());
      } finally {
        Gateways.close(channel);
      }
    }
  }

  /** The model's line: name, family, sizes. */
  static java.util.List<String> describe(ModelInfo i) {
    return java.util.List.of(String.format(Locale.ROOT,
        "model %s (%s): %d layers, %d experts per layer (top-%d), hidden %d, vocab %d, context %d, %s",
        i.getName(), i.getModelType(), i.getNumLayers(), i.getNumExperts(), i.getExpertsPerToken(),
        i.getHiddenSize(), i.getVocabSize(), i.getContextLength(), i.getDtype()));
  }
}
