package io.moecluster.deploy.commands;

import io.moecluster.deploy.cli.ExitCodes;
import io.moecluster.deploy.cluster.HostPort;
import io.moecluster.deploy.stats.PrometheusText;
import io.moecluster.deploy.stats.StatsReport;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe stats}: scrapes the {@code /metrics} endpoints of some nodes and prints the routing
 * heat map, the expert nodes' cache and prefetch figures, the prefetch accuracy per layer and the
 * gateway's requests and latencies. Exit 1 when a target cannot be scraped (the others are still
 * reported), 2 for a malformed target.
 */
@Command(name = "stats",
    description = {"Print a cluster's metrics in the terminal: tokens routed per layer x expert, per node cache hits,"
        + " warm bytes, evictions and prefetch, prediction accuracy per layer, gateway requests and latencies.",
        "Targets are /metrics endpoints (host:port), e.g. the ones moe local-cluster prints."})
public final class StatsCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--target", paramLabel = "HOST:PORT[,..]", required = true,
      description = "metrics endpoints to scrape (GET http://HOST:PORT/metrics), comma-separated")
  String targets;

  @Option(names = "--timeout", paramLabel = "SECONDS", description = "per scrape (default: ${DEFAULT-VALUE})",
      defaultValue = "5")
  int timeoutSeconds;

  @Override
  public Integer call() throws InterruptedException {
    List<HostPort> endpoints = HostPort.parseList(targets, "--target");
    if (timeoutSeconds < 1) {
      throw new IllegalArgumentException("--timeout must be >= 1, got " + timeoutSeconds);
    }
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    Duration timeout = Duration.ofSeconds(timeoutSeconds);
    List<StatsReport.Scrape> scrapes = new ArrayList<>();
    boolean failed = false;
    try (HttpClient http = HttpClient.newBuilder().connectTimeout(timeout).build()) {
      for (HostPort target : endpoints) {
        try {
          scrapes.add(new StatsReport.Scrape(target.toString(), scrape(http, target, timeout)));
        } catch (IOException | IllegalArgumentException e) {
          err.println("moe: cannot scrape " + target + ": " + describe(e));
          err.flush();
          failed = true;
        }
      }
    }
    if (!scrapes.isEmpty()) {
      out.println("moe stats: " + scrapes.size() + " of " + endpoints.size() + " endpoint(s) scraped: "
          + String.join(", ", scrapes.stream().map(StatsReport.Scrape::target).toList()));
      out.println();
      StatsReport.render(scrapes).forEach(out::println);
      out.flush();
    }
    return failed ? ExitCodes.FAILURE : ExitCodes.OK;
  }

  static PrometheusText scrape(HttpClient http, HostPort target, Duration timeout)
      throws IOException, InterruptedException {
    String host = target.host().contains(":") ? "[" + target.host() + "]" : target.host();
    HttpRequest request = HttpRequest.newBuilder(URI.create("http://" + host + ":" + target.port() + "/metrics"))
        .timeout(timeout)
        .header("Accept", "text/plain; version=0.0.4")
        .GET()
        .build();
    HttpResponse<String> response = http.send(request, HttpResponse.BodyHandlers.ofString());
    if (response.statusCode() != 200) {
      throw new IOException("HTTP " + response.statusCode() + " from " + request.uri());
    }
    return PrometheusText.parse(response.body());
  }

  private static String describe(Exception e) {
    String m = e.getMessage();
    if (e instanceof java.net.ConnectException) {
      return "connection refused" + (m == null || m.isBlank() ? "" : " (" + m + ")");
    }
    if (e instanceof java.net.http.HttpTimeoutException) {
      return "timed out";
    }
    return m == null || m.isBlank() ? e.getClass().getSimpleName() : m;
  }
}
