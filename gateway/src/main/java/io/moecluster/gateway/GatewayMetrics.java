package io.moecluster.gateway;

import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.Status;
import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.GaugeWithCallback;
import io.prometheus.metrics.core.metrics.Histogram;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;

/**
 * The Prometheus metric families of the gateway role, registered once per JVM in the default
 * registry (first use). Latencies and token counts carry no node label: one gateway serves per
 * JVM outside tests, and the scrape target names it. The running/waiting gauges read each live
 * gateway's {@link Admission} at scrape time, labelled with its cluster address ({@code node}).
 *
 * <p>A Generate/Complete call is followed by one {@link Call}: first token, each later token, its
 * prompt, and its end (exactly once, with the final gRPC status code).
 *
 * <p>Every family is built {@code withoutExemplars()}: no tracer supplies trace ids for them, and
 * the exemplar sampler's rate limiter schedules a task on the client's scheduler thread for each
 * observation it keeps, a thread wake-up on the path of every layer or token.
 */
public final class GatewayMetrics {
  private static final long DEADLINE_TOLERANCE_MILLIS = 100;

  private GatewayMetrics() {}

  /** 5 ms to 60 s: from a tiny CPU model's inter-token gap to a long generation end to end. */
  static final double[] LATENCY_BUCKETS = {
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 30, 60
  };

  private static final Map<String, Admission> admissions = new ConcurrentHashMap<>();

  /** Reports {@code admission}'s running and waiting streams under {@code node} until untracked. */
  static void track(String node, Admission admission) {
    Holder.touch();
    admissions.put(node, admission);
  }

  static void untrack(String node, Admission admission) {
    admissions.remove(node, admission);
  }

  /** A request that arrived now, on its gRPC thread (the call's deadline is read from there). */
  static Call call() {
    return new Call(System.nanoTime(), Context.current().getDeadline());
  }

  /** Calls ended with {@code code} so far (tests). */
  static double requests(Status.Code code) {
    return Holder.REQUESTS.labelValues(code.name()).get();
  }

  /** Resubmissions so far for {@code reason} (tests). */
  static double resubmissions(String reason) {
    return Holder.RESUBMISSIONS.labelValues(reason).get();
  }

  /** Counts a Generate/Complete call that ended before it had a session (invalid, internal). */
  static void rejected(Status.Code code) {
    Holder.REQUESTS.labelValues(code.name()).inc();
  }

  /** One Generate/Complete call's measurements; used by its session's actor only. */
  static final class Call {
    private final long start;
    private final Deadline deadline;
    private long lastToken = -1;
    private boolean ended;

    private Call(long start, Deadline deadline) {
      this.start = start;
      this.deadline = deadline;
    }

    /** The prompt went to a router. */
    void submitted(int promptTokens) {
      Holder.PROMPT_TOKENS.inc(promptTokens);
    }

    /** The stream went to another router after losing its own; {@code reason} labels why. */
    void resubmitted(String reason) {
      Holder.RESUBMISSIONS.labelValues(reason).inc();
    }

    /** Whether the call's deadline has passed (a call without one never expires). */
    boolean deadlinePassed() {
      return deadline != null && deadline.isExpired();
    }

    /** A generated token arrived from the router. */
    void token() {
      long now = System.nanoTime();
      if (lastToken < 0) {
        Holder.TTFT.observe((now - start) / 1e9);
      } else {
        Holder.ITL.observe((now - lastToken) / 1e9);
      }
      lastToken = now;
      Holder.GENERATED_TOKENS.inc();
    }

    /**
     * The client went away: DEADLINE_EXCEEDED when its deadline passed, else CANCELLED. The client
     * cancels when its own deadline fires, which can reach us a little before the server's copy of
     * that deadline expires (the clocks start at different moments), so a deadline that is due
     * within the tolerance counts as passed.
     */
    void cancelled() {
      boolean due = deadline != null && deadline.timeRemaining(TimeUnit.MILLISECONDS) <= DEADLINE_TOLERANCE_MILLIS;
      ended(due ? Status.Code.DEADLINE_EXCEEDED : Status.Code.CANCELLED);
    }

    /** The call ended with {@code code}; later calls do nothing. */
    void ended(Status.Code code) {
      if (ended) {
        return;
      }
      ended = true;
      Holder.DURATION.observe((System.nanoTime() - start) / 1e9);
      Holder.REQUESTS.labelValues(code.name()).inc();
    }
  }

  private static final class Holder {
    static final Histogram TTFT = Histogram.builder().withoutExemplars().name("moe_time_to_first_token_seconds")
        .help("Time from a Generate/Complete call's arrival to its first generated token at the gateway")
        .classicOnly().classicUpperBounds(LATENCY_BUCKETS).register();
    static final Histogram ITL = Histogram.builder().withoutExemplars().name("moe_inter_token_latency_seconds")
        .help("Time between consecutive generated tokens of one call, at the gateway")
        .classicOnly().classicUpperBounds(LATENCY_BUCKETS).register();
    static final Histogram DURATION = Histogram.builder().withoutExemplars().name("moe_request_duration_seconds")
        .help("Time from a Generate/Complete call's arrival to its end (any status)")
        .classicOnly().classicUpperBounds(LATENCY_BUCKETS).register();
    static final Counter PROMPT_TOKENS = Counter.builder().withoutExemplars().name("moe_prompt_tokens_total")
        .help("Prompt tokens of the calls sent to a router").register();
    static final Counter GENERATED_TOKENS = Counter.builder().withoutExemplars().name("moe_generated_tokens_total")
        .help("Tokens generated for the gateway's calls").register();
    static final Counter REQUESTS = Counter.builder().withoutExemplars().name("moe_requests_total")
        .help("Generate/Complete calls ended, by final gRPC status code").labelNames("code").register();
    static final Counter RESUBMISSIONS = Counter.builder().withoutExemplars().name("moe_request_resubmissions_total")
        .help("Streams resubmitted to another router, resumed after the tokens already sent, by why the"
            + " previous router was lost (router_unreachable: its node is unreachable; router_lost: it"
            + " stopped or left; router_unavailable: it answered UNAVAILABLE; router_exhausted: it answered"
            + " RESOURCE_EXHAUSTED, full or out of memory)")
        .labelNames("reason").register();
    static final GaugeWithCallback RUNNING = GaugeWithCallback.builder().name("moe_requests_running")
        .help("Generate/Complete streams holding an admission slot").labelNames("node")
        .callback(cb -> admissions.forEach((node, a) -> cb.call(a.running(), node))).register();
    static final GaugeWithCallback WAITING = GaugeWithCallback.builder().name("moe_requests_waiting")
        .help("Generate/Complete streams waiting for an admission slot").labelNames("node")
        .callback(cb -> admissions.forEach((node, a) -> cb.call(a.queued(), node))).register();

    static void touch() {}
  }

  /** Registers every family (at zero) so a scrape shows them before the first request. */
  public static void register() {
    Holder.touch();
  }
}
