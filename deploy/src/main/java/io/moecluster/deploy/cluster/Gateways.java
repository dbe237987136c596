package io.moecluster.deploy.cluster;

import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.moecluster.deploy.cli.UserError;
import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/** Client-side helpers for a gateway: channels, and waiting until it is SERVING. */
public final class Gateways {
  private Gateways() {}

  /** A plaintext channel to {@code target}. Close it with {@link #close(ManagedChannel)}. */
  public static ManagedChannel channel(HostPort target) {
    return Grpc.newChannelBuilder(target.toString(), InsecureChannelCredentials.create()).build();
  }

  public static void close(ManagedChannel channel) {
    channel.shutdownNow();
    try {
      channel.awaitTermination(5, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** One health check of the whole server (service ""); UNKNOWN when it does not answer. */
  public static ServingStatus health(ManagedChannel channel, Duration deadline) {
    try {
      return HealthGrpc.newBlockingStub(channel)
          .withDeadlineAfter(deadline.toMillis(), TimeUnit.MILLISECONDS)
          .check(HealthCheckRequest.newBuilder().setService("").build())
          .getStatus();
    } catch (StatusRuntimeException e) {
      return ServingStatus.UNKNOWN;
    }
  }

  /**
   * Polls the health service until it says SERVING. {@code failure} is asked between polls and
   * returns an error when waiting is pointless (a node died); that error is thrown. Timing out
   * throws too, saying what the gateway said last.
   */
  public static void awaitServing(ManagedChannel channel, Duration timeout,
      Supplier<Optional<? extends RuntimeException>> failure)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    ServingStatus last = ServingStatus.UNKNOWN;
    while (true) {
      Optional<? extends RuntimeException> failed = failure.get();
      if (failed.isPresent()) {
        throw failed.get();
      }
      last = health(channel, Duration.ofSeconds(2));
      if (last == ServingStatus.SERVING) {
        return;
      }
      if (System.nanoTime() > deadline) {
        throw new UserError("the cluster was not SERVING after " + timeout.toSeconds() + " s (health: " + last
            + "); see the nodes' logs above, or give it longer with --start-timeout");
      }
      Thread.sleep(250);
    }
  }
}
