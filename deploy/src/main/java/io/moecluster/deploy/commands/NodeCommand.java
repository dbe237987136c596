package io.moecluster.deploy.commands;

import io.moecluster.deploy.cluster.HostPort;
import io.moecluster.deploy.cluster.NodeSpec;
import io.moecluster.deploy.cluster.Role;
import io.moecluster.expert.ExpertBackendSettings;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;

/** {@code moe node}: one node of a moe cluster, with the roles it is given. */
@Command(name = "node",
    description = {"Run one cluster node with the given roles until Ctrl-C or SIGTERM.",
        "Example: moe node --roles expert --backend cuda --seed-nodes 10.0.0.1:25520 --model /models/mixtral --host 10.0.0.7"})
public final class NodeCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--roles", paramLabel = "ROLE[,ROLE]", required = true,
      description = "expert, router and/or gateway, comma-separated")
  String roles;

  @Option(names = "--seed-nodes", paramLabel = "HOST:PORT[,..]", required = true,
      description = "cluster nodes to join (list this node itself on the first seed)")
  String seedNodes;

  @Option(names = "--model", paramLabel = "DIR", required = true, description = "a Hugging Face checkpoint directory")
  Path model;

  @Option(names = "--host", description = "address other nodes reach this one at (default: ${DEFAULT-VALUE})", defaultValue = "127.0.0.1")
  String host;

  @Option(names = "--port", description = "cluster (Artery) port, 0 picks a free one (default: ${DEFAULT-VALUE})", defaultValue = "25520")
  int port;

  @Option(names = "--grpc-port", description = "gRPC port of the gateway role, 0 picks a free one (default: ${DEFAULT-VALUE})",
      defaultValue = "50051")
  int grpcPort;

  @Option(names = "--grpc-host", description = "address the gateway's gRPC server binds (default: the --host)")
  String grpcHost;

  @Option(names = "--metrics-port", paramLabel = "PORT",
      description = "port of the Prometheus /metrics endpoint; 0 picks a free one, -1 serves none (default: moe.metrics.port, 9400)")
  Integer metricsPort;

  @Option(names = "--backend", paramLabel = "auto|cpu|cuda",
      description = "where the expert role runs its FFNs: auto (a GPU when the CUDA driver finds one, else the CPU),"
          + " cpu, or cuda (no usable GPU is an error). Sets moe.expert.backend (default: auto)")
  String backend;

  @Option(names = "--conf", paramLabel = "KEY=VALUE", description = "a config setting (HOCON), over everything else; repeatable")
  Map<String, String> conf = new LinkedHashMap<>();

  @Mixin GatewaySecurityOptions security;

  @Option(names = "--parent-pid", hidden = true, description = "stop when this process exits (set by local-cluster)")
  Long parentPid;

  @Override
  public Integer call() throws InterruptedException {
    Map<String, String> settings = new LinkedHashMap<>();
    if (backend != null) {
      try {
        settings.put("moe.expert.backend", ExpertBackendSettings.Choice.parse(backend).name().toLowerCase(Locale.ROOT));
      } catch (IllegalArgumentException e) {
        throw new ParameterException(spec.commandLine(), "--backend must be auto, cpu or cuda, got '" + backend + "'");
      }
    }
    settings.putAll(conf); // --conf is over everything else
    security.addTo(settings); // only where --conf does not set the same key
    NodeSpec node = new NodeSpec(Role.parseList(roles), host, port, HostPort.parseList(seedNodes, "--seed-nodes"),
        model, grpcHost != null ? grpcHost : host, grpcPort, settings, metricsPort);
    return NodeRunner.run(node, spec.commandLine().getOut(), spec.commandLine().getErr(), parentPid);
  }
}
