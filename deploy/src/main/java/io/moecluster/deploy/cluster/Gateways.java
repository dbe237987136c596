package io.moecluster.deploy.cluster;

import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.moecluster.deploy.cli.UserError;
import io.moecluster.gateway.security.GatewaySecurity;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/** Client-side helpers for a gateway: channels, and waiting until it is SERVING. */
public final class Gateways {
  private Gateways() {}

  /** The variable a gateway reads its API keys from by default ({@code moe.gateway.api-keys-env}). */
  static final String GATEWAY_KEYS_ENV = "MOE_API_KEYS";

  /**
   * A plaintext channel to a gateway this process started on loopback ({@code local-cluster},
   * {@code demo}, {@code chaos}). Its nodes inherited this process's environment, so when {@code
   * $MOE_API_KEYS} is set the gateway requires a key: the calls carry the first. Close it with
   * {@link #close(ManagedChannel)}.
   */
  public static ManagedChannel channel(HostPort target) {
    return channel(target, System.getenv());
  }

  static ManagedChannel channel(HostPort target, Map<String, String> environment) {
    ManagedChannelBuilder<?> builder = Grpc.newChannelBuilder(target.toString(), InsecureChannelCredentials.create());
    String keys = environment.get(GATEWAY_KEYS_ENV);
    if (keys != null) {
      GatewaySecurity.splitKeys(keys).stream().findFirst()
          .ifPresent(key -> builder.intercept(ClientChannels.bearer(key)));
    }
    return builder.build();
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
