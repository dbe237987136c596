package io.moecluster.gateway.security;

import io.prometheus.metrics.core.metrics.Counter;

/**
 * The gateway's count of calls refused before they reached a service: no or a wrong API key
 * ({@code unauthenticated}), too many calls open from one client ({@code client_limit}), a request
 * that is not a valid protobuf message ({@code malformed}). Registered in the default registry.
 */
public final class RefusedCalls {
  private RefusedCalls() {}

  /** Why a call was refused; the label value. */
  public enum Reason {
    UNAUTHENTICATED("unauthenticated"),
    CLIENT_LIMIT("client_limit"),
    MALFORMED("malformed");

    final String label;

    Reason(String label) {
      this.label = label;
    }
  }

  private static final Counter REFUSED =
      Counter.builder().withoutExemplars()
          .name("moe_gateway_refused_calls_total")
          .help("gRPC calls the gateway refused before a service ran them, by reason")
          .labelNames("reason")
          .register();

  static {
    for (Reason r : Reason.values()) {
      REFUSED.labelValues(r.label).inc(0); // every series visible from the first scrape
    }
  }

  static void count(Reason reason) {
    REFUSED.labelValues(reason.label).inc();
  }

  /** Calls refused for {@code reason} so far in this JVM (tests). */
  public static double total(Reason reason) {
    return REFUSED.labelValues(reason.label).get();
  }

  /** Registers the family (at zero) so a scrape shows it before the first refusal. */
  public static void register() {}
}
