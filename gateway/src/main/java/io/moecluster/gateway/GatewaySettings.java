package io.moecluster.gateway;

import com.typesafe.config.Config;
import java.time.Duration;

/**
 * The gateway's settings, read once from {@code moe.gateway} (see reference.conf for what each key
 * means).
 *
 * @param modelName the served model name; empty = the checkpoint directory's name
 */
public record GatewaySettings(
    int grpcPort,
    String modelName,
    int maxRunning,
    int maxQueued,
    int defaultMaxTokens,
    int maxMaxTokens,
    int maxPromptChars,
    int maxStopSequences,
    int maxStopSequenceChars,
    int maxLogprobs,
    int maxInboundMessageBytes,
    Duration drainTimeout,
    Duration routerAskTimeout,
    Duration firstEventTimeout,
    Duration healthPollInterval,
    int maxResubmissions) {

  public GatewaySettings {
    requireRange("max-resubmissions", maxResubmissions, 0, 100);
    requireRange("grpc-port", grpcPort, 0, 65535);
    requireRange("max-running", maxRunning, 1, Integer.MAX_VALUE);
    requireRange("max-queued", maxQueued, 0, Integer.MAX_VALUE);
    requireRange("max-max-tokens", maxMaxTokens, 1, Integer.MAX_VALUE);
    requireRange("default-max-tokens", defaultMaxTokens, 1, maxMaxTokens);
    requireRange("max-prompt-chars", maxPromptChars, 1, Integer.MAX_VALUE);
    // Stop sequences travel in every Submit (one Artery frame) and are checked after every token.
    requireRange("max-stop-sequences", maxStopSequences, 0, 64);
    requireRange("max-stop-sequence-chars", maxStopSequenceChars, 1, 1024);
    // The router's own limit (GenerationRequest.MAX_LOGPROBS).
    requireRange(
        "max-logprobs", maxLogprobs, 0, io.moecluster.core.generate.GenerationRequest.MAX_LOGPROBS);
    requireRange("max-inbound-message-bytes", maxInboundMessageBytes, 1024, Integer.MAX_VALUE);
    modelName = modelName == null ? "" : modelName.strip();
    for (Duration d : new Duration[] {routerAskTimeout, firstEventTimeout, healthPollInterval}) {
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException("moe.gateway timeouts must be > 0, got " + d);
      }
    }
    if (drainTimeout.isNegative()) {
      throw new IllegalArgumentException(
          "moe.gateway.drain-timeout must be >= 0, got " + drainTimeout);
    }
  }

  /** Reads {@code moe.gateway} from a config that includes the reference.conf defaults. */
  public static GatewaySettings fromConfig(Config config) {
    Config c = config.getConfig("moe.gateway");
    return new GatewaySettings(
        c.getInt("grpc-port"),
        c.getString("model-name"),
        c.getInt("max-running"),
        c.getInt("max-queued"),
        c.getInt("default-max-tokens"),
        c.getInt("max-max-tokens"),
        c.getInt("max-prompt-chars"),
        c.getInt("max-stop-sequences"),
        c.getInt("max-stop-sequence-chars"),
        c.getInt("max-logprobs"),
        (int) Math.min(Integer.MAX_VALUE, c.getBytes("max-inbound-message-bytes")),
        c.getDuration("drain-timeout"),
        c.getDuration("router-ask-timeout"),
        c.getDuration("first-event-timeout"),
        c.getDuration("health-poll-interval"),
        c.getInt("max-resubmissions"));
  }

  /** A copy with other admission limits (tests, the CLI's flags). */
  public GatewaySettings withAdmission(int maxRunning, int maxQueued) {
    return new GatewaySettings(
        grpcPort,
        modelName,
        maxRunning,
        maxQueued,
        defaultMaxTokens,
        maxMaxTokens,
        maxPromptChars,
        maxStopSequences,
        maxStopSequenceChars,
        maxLogprobs,
        maxInboundMessageBytes,
        drainTimeout,
        routerAskTimeout,
        firstEventTimeout,
        healthPollInterval,
        maxResubmissions);
  }

  private static void requireRange(String key, long value, long min, long max) {
    if (value < min || value > max) {
      throw new IllegalArgumentException(
          "moe.gateway." + key + " must be in [" + min + ", " + max + "], got " + value);
    }
  }
}
