package io.moecluster.deploy.commands;

import io.moecluster.deploy.cli.ExitCodes;
import io.moecluster.deploy.cluster.ChildProcess;
import io.moecluster.deploy.cluster.HostPort;
import io.moecluster.deploy.cluster.LocalCluster;
import io.moecluster.deploy.cluster.Placement;
import io.moecluster.proto.v1.ModelInfo;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe local-cluster}: a gateway+router JVM and N expert JVMs on loopback, as children of
 * this process, until Ctrl-C or SIGTERM.
 */
@Command(name = "local-cluster",
    description = {"Start a cluster on this machine: one gateway+router JVM (the seed) and N expert JVMs.",
        "Their logs are prefixed with the node's name; Ctrl-C or SIGTERM stops them one after the other."})
public final class LocalClusterCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--model", paramLabel = "DIR", required = true, description = "a Hugging Face checkpoint directory")
  Path model;

  @Option(names = "--expert-nodes", description = "expert JVMs (default: ${DEFAULT-VALUE})", defaultValue = "2")
  int expertNodes;

  @Option(names = "--grpc-port", description = "the gateway's gRPC port, 0 picks a free one (default: ${DEFAULT-VALUE})",
      defaultValue = "50051")
  int grpcPort;

  @Option(names = "--base-port", description = "cluster port of the seed; expert i gets base + i; 0 picks free ports"
      + " (default: ${DEFAULT-VALUE})", defaultValue = "25520")
  int basePort;

  @Option(names = "--metrics-base-port", paramLabel = "PORT",
      description = "/metrics port of the gateway JVM; expert i gets base + i; 0 picks free ports, -1 serves none"
          + " (default: ${DEFAULT-VALUE})", defaultValue = "9400")
  int metricsBasePort;

  @Option(names = "--conf", paramLabel = "KEY=VALUE", description = "a config setting for every node (HOCON); repeatable")
  Map<String, String> conf = new LinkedHashMap<>();

  @Option(names = "--start-timeout", paramLabel = "SECONDS", description = "how long to wait for SERVING (default: ${DEFAULT-VALUE})",
      defaultValue = "180")
  int startTimeoutSeconds;

  @Option(names = "--stop-grace", paramLabel = "SECONDS",
      description = "how long a node may take to stop after SIGTERM before it is killed (default: ${DEFAULT-VALUE})",
      defaultValue = "60")
  int stopGraceSeconds;

  @Option(names = "--parent-pid", hidden = true,
      description = "stop the cluster when this process exits (tests pass their own PID)")
  Long parentPid;

  @Override
  public Integer call() throws InterruptedException {
    NodeRunner.checkModelDir(model);
    if (parentPid != null) {
      NodeRunner.watchParent(parentPid, spec.commandLine().getErr());
    }
    if (startTimeoutSeconds < 1 || stopGraceSeconds < 1) {
      throw new IllegalArgumentException("--start-timeout and --stop-grace must be >= 1");
    }
    LocalCluster.Options options = new LocalCluster.Options(model, expertNodes, grpcPort, basePort, conf,
        Duration.ofSeconds(startTimeoutSeconds), Duration.ofSeconds(stopGraceSeconds), metricsBasePort);
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    try (LocalCluster cluster = startServing(options, System.err, err)) {
      ModelInfo info = cluster.modelInfo();
      out.println("moe: local cluster serving " + info.getName() + " on " + cluster.gateway());
      for (String line : Placement.describe(info, cluster::nameOf)) {
        out.println(line);
      }
      if (!cluster.metricsEndpoints().isEmpty()) {
        out.println("moe: metrics on " + cluster.metricsEndpoints().entrySet().stream()
            .map(e -> e.getKey() + "=http://" + e.getValue() + "/metrics").collect(java.util.stream.Collectors.joining(" ")));
        out.println("moe: see them with: moe stats --target " + cluster.metricsEndpoints().values().stream()
            .map(HostPort::toString).collect(java.util.stream.Collectors.joining(",")));
      }
      out.flush();
      ChildProcess gone = cluster.anyExit().join();
      if (cluster.stopping()) {
        return ExitCodes.OK;
      }
      err.println("moe: " + gone.name() + " exited with code " + gone.exitValue() + "; stopping the local cluster");
      err.flush();
      return ExitCodes.FAILURE;
    }
  }

  /**
   * Starts the cluster with a shutdown hook that stops it (Ctrl-C, SIGTERM), and waits until it
   * is SERVING. Closes it again if that fails.
   */
  static LocalCluster startServing(LocalCluster.Options options, PrintStream childLog, PrintWriter err)
      throws InterruptedException {
    err.printf("moe: starting a local cluster: gateway+router and %d expert JVMs, model %s%n",
        options.expertNodes(), options.model());
    err.flush();
    LocalCluster cluster = LocalCluster.start(options, childLog);
    Thread hook = new Thread(cluster::close, "local-cluster-stop");
    Runtime.getRuntime().addShutdownHook(hook);
    try {
      cluster.awaitServing();
      return cluster;
    } catch (InterruptedException | RuntimeException e) {
      cluster.close();
      throw e;
    }
  }
}
