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

  /** The gateway to talk to. */
  static final class Target {
    @Option(names = "--target", paramLabel = "HOST:PORT", defaultValue = "127.0.0.1:50051",
        description = "the gateway's gRPC address (default: ${DEFAULT-VALUE})")
    String target;

    @Mixin ClientSecurityOptions security;

    HostPort hostPort() {
      return HostPort.parse(target, "--target");
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

    @Override
    public Integer call() {
      GenerateRequest request = RemoteGeneration.request(options);
      PrintWriter out = spec.commandLine().getOut();
      PrintWriter err = spec.commandLine().getErr();
      ManagedChannel channel = target.channel();
      boolean printedText = false;
      try {
        var stub = InferenceGrpc.newBlockingStub(channel);
        int[] promptIds = options.json() ? RemoteGeneration.promptIds(stub, request) : null;
        boolean[] any = {false};
        RemoteGeneration.Outcome outcome = RemoteGeneration.stream(stub, request, promptIds, text -> {
          if (!options.json()) {
            out.print(text);
            out.flush();
            any[0] = true;
          }
        });
        printedText = any[0];
        if (options.json()) {
          out.println(GenerateCommand.toJson(outcome.toResult()));
        } else {
          out.println();
        }
        out.flush();
        RemoteGeneration.printSpeeds(err, outcome);
        return 0;
      } catch (StatusRuntimeException e) {
        if (printedText) {
          out.println();
          out.flush();
        }
        return RemoteGeneration.report(e, err);
      } finally {
        Gateways.close(channel);
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
