package io.moecluster.deploy.commands;

import io.grpc.ManagedChannel;
import io.moecluster.deploy.cluster.Gateways;
import io.moecluster.deploy.cluster.HostPort;
import java.time.Duration;
import java.util.List;
import java.util.function.Function;

/**
 * The gateways a client may use, in order, and its channel to the current one. gRPC never retries
 * a stream once it has started, so a client resumes a broken one itself: {@link #reconnect} moves
 * to the next gateway (round robin; the same one when only one is given) after an exponential
 * backoff, at most {@code maxReconnects} times per generation. Not thread-safe.
 */
final class GatewayFailover implements AutoCloseable {
  /** First wait before reconnecting; doubled each time, up to {@link #MAX_BACKOFF}. */
  static final Duration FIRST_BACKOFF = Duration.ofMillis(200);

  static final Duration MAX_BACKOFF = Duration.ofSeconds(5);

  private final List<HostPort> targets;
  private final Function<HostPort, ManagedChannel> channels;
  private final int maxReconnects;
  private int current;
  private int reconnects;
  private ManagedChannel channel;

  /**
   * @param channels opens a channel to a gateway (plaintext, or whatever security the client uses)
   * @param maxReconnects reconnections allowed; 0 = fail on the first error
   */
  GatewayFailover(List<HostPort> targets, Function<HostPort, ManagedChannel> channels, int maxReconnects) {
    if (targets.isEmpty()) {
      throw new IllegalArgumentException("at least one --target is needed");
    }
    if (maxReconnects < 0) {
      throw new IllegalArgumentException("--reconnects must be >= 0, got " + maxReconnects);
    }
    this.targets = List.copyOf(targets);
    this.channels = channels;
    this.maxReconnects = maxReconnects;
  }

  /** The gateway in use. */
  HostPort target() {
    return targets.get(current);
  }

  /** The channel to the gateway in use, opened on first use. */
  ManagedChannel channel() {
    if (channel == null) {
      channel = channels.apply(target());
    }
    return channel;
  }

  int reconnects() {
    return reconnects;
  }

  int maxReconnects() {
    return maxReconnects;
  }

  /** Whether another reconnection is allowed. */
  boolean canReconnect() {
    return reconnects < maxReconnects;
  }

  /** Closes the current channel, waits the backoff, and moves to the next gateway. */
  void reconnect() throws InterruptedException {
    if (!canReconnect()) {
      throw new IllegalStateException("no reconnection left");
    }
    reconnects++;
    closeChannel();
    Thread.sleep(backoff(reconnects).toMillis());
    current = (current + 1) % targets.size();
  }

  /** The wait before reconnection {@code n} (1 for the first). */
  static Duration backoff(int n) {
    long millis = FIRST_BACKOFF.toMillis() << Math.min(n - 1, 20);
    return Duration.ofMillis(Math.min(millis, MAX_BACKOFF.toMillis()));
  }

  private void closeChannel() {
    if (channel != null) {
      Gateways.close(channel);
      channel = null;
    }
  }

  @Override
  public void close() {
    closeChannel();
  }
}
