package io.moecluster.deploy.commands;

import io.moecluster.deploy.cluster.NodeSpec;
import io.moecluster.deploy.cluster.Role;
import java.nio.file.Path;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/** {@code moe serve}: gateway, router and expert in one JVM, a one-node cluster. */
@Command(name = "serve",
    description = {"Serve a model over gRPC from this JVM alone (gateway, router and expert roles in a one-node cluster).",
        "Prints 'moe: serving MODEL on HOST:PORT' when ready; Ctrl-C or SIGTERM drains and stops."})
public final class ServeCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--model", paramLabel = "DIR", required = true, description = "a Hugging Face checkpoint directory")
  Path model;

  @Option(names = "--grpc-port", description = "gRPC port, 0 picks a free one (default: ${DEFAULT-VALUE})", defaultValue = "50051")
  int grpcPort;

  @Option(names = "--grpc-host", description = "address the gRPC server binds (default: ${DEFAULT-VALUE}; 0.0.0.0 for all)",
      defaultValue = "127.0.0.1")
  String grpcHost;

  @Option(names = "--host", description = "cluster (Artery) address of this node (default: ${DEFAULT-VALUE})", defaultValue = "127.0.0.1")
  String host;

  @Option(names = "--port", description = "cluster (Artery) port, 0 picks a free one (default: ${DEFAULT-VALUE})", defaultValue = "0")
  int port;

  @Option(names = "--metrics-port", paramLabel = "PORT",
      description = "port of the Prometheus /metrics endpoint; 0 picks a free one, -1 serves none (default: moe.metrics.port, 9400)")
  Integer metricsPort;

  @Option(names = "--conf", paramLabel = "KEY=VALUE", description = "a config setting (HOCON), over everything else; repeatable")
  Map<String, String> conf = new LinkedHashMap<>();

  @Mixin GatewaySecurityOptions security;

  @Override
  public Integer call() throws InterruptedException {
    security.addTo(conf);
    NodeSpec node = new NodeSpec(EnumSet.allOf(Role.class), host, port, List.of(), model, grpcHost, grpcPort, conf,
        metricsPort);
    return NodeRunner.run(node, spec.commandLine().getOut(), spec.commandLine().getErr(), null);
  }
}
