package io.moecluster.deploy.commands;

import io.moecluster.deploy.cli.ExitCodes;
import io.moecluster.deploy.cluster.ClusterNode;
import io.moecluster.deploy.cluster.HostPort;
import io.moecluster.deploy.cluster.NodeSpec;
import io.moecluster.deploy.cluster.Role;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;
import java.util.concurrent.ExecutionException;
import java.util.stream.Collectors;
import org.apache.pekko.actor.CoordinatedShutdown;

/**
 * Runs one cluster node until it stops: shared by {@code moe serve} and {@code moe node}. Prints
 * where the gateway serves once its health says SERVING, watches the parent process when asked
 * to (local-cluster children), and maps how the node ended to an exit code.
 */
final class NodeRunner {
  private NodeRunner() {}

  static void checkModelDir(Path model) {
    if (!Files.isDirectory(model)) {
      throw new IllegalArgumentException("--model: " + model + " is not a directory");
    }
    if (!Files.isRegularFile(model.resolve("config.json"))) {
      throw new IllegalArgumentException("--model: " + model + " has no config.json (not a Hugging Face checkpoint)");
    }
  }

  static int run(NodeSpec spec, PrintWriter out, PrintWriter err, Long parentPid) throws InterruptedException {
    checkModelDir(spec.modelDir());
    if (parentPid != null) {
      watchParent(parentPid, err);
    }
    ClusterNode node = ClusterNode.start(spec);
    String roles = spec.roles().stream().map(Role::clusterRole).sorted().collect(Collectors.joining(","));
    err.println("moe: node " + node.address() + " started with roles " + roles);
    node.metricsAddress().ifPresent(m -> err.println("moe: metrics on http://" + m + "/metrics"));
    err.flush();
    Optional<HostPort> grpc = node.grpcAddress();
    if (grpc.isPresent()) {
      Thread.ofPlatform().name("serving-announcer").daemon().start(() -> announce(node, grpc.get(), out));
    }
    try {
      node.whenTerminated().toCompletableFuture().get();
    } catch (ExecutionException e) {
      return ExitCodes.FAILURE;
    }
    Optional<CoordinatedShutdown.Reason> reason = node.shutdownReason();
    boolean clean = reason.isEmpty()
        || reason.get() == CoordinatedShutdown.jvmExitReason()
        || reason.get() == CoordinatedShutdown.unknownReason()
        || reason.get() == CoordinatedShutdown.clusterLeavingReason();
    err.println("moe: node " + node.address() + " stopped" + reason.map(r -> " (" + r + ")").orElse(""));
    err.flush();
    return clean ? ExitCodes.OK : ExitCodes.FAILURE;
  }

  /**
   * Prints "moe: serving MODEL on HOST:PORT" on stdout once the gateway is SERVING. Asks the
   * gateway in process rather than over gRPC, which would need the client side of its TLS and keys.
   */
  private static void announce(ClusterNode node, HostPort address, PrintWriter out) {
    try {
      while (!node.gatewayServing()) {
        if (node.whenTerminated().toCompletableFuture().isDone()) {
          return;
        }
        Thread.sleep(250);
      }
      out.println("moe: serving " + node.spec().modelDir().toAbsolutePath().normalize().getFileName()
          + " on " + address);
      out.flush();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Exits (orderly, through the shutdown hooks) when process {@code pid} is gone: a node started
   * by local-cluster, or a local-cluster started by a test, leaves nothing behind if its parent
   * is killed.
   */
  static void watchParent(long pid, PrintWriter err) {
    Optional<ProcessHandle> parent = ProcessHandle.of(pid);
    if (parent.isEmpty() || !parent.get().isAlive()) {
      throw new IllegalArgumentException("--parent-pid " + pid + ": no such process");
    }
    parent.get().onExit().thenRun(() -> {
      err.println("moe: parent process " + pid + " is gone; stopping");
      err.flush();
      System.exit(ExitCodes.FAILURE);
    });
  }
}
