package io.moecluster.deploy.chaos;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Locale;

/**
 * The outcome of one scenario: the load's requests against the reference, and per fault the
 * stall and recovery of the streams it hit ({@link StallAnalysis} defines them). {@link #ok()}
 * only when every fault was injected (and a restarted node rejoined), every request completed, and
 * every request's tokens equal the reference's.
 *
 * @param identical completed requests whose tokens equal the single-process reference's
 * @param mismatched completed requests whose tokens differ (duplicated, missing or wrong tokens)
 * @param problems the first failures and differences, one line each
 * @param notes what the reader should know about the run (e.g. a setting the cluster ignored)
 */
public record ChaosReport(Scenario scenario, String topology, int replicas, int streams, int maxTokens, long seed,
    double loadSeconds, int requests, int completed, int failed, int identical, int mismatched,
    List<FaultReport> faults, int faultsScheduled, List<String> problems, List<String> notes) {

  /** One injected fault with what it did. */
  public record FaultReport(Fault fault, FaultInjector.Injected injected, StallAnalysis analysis) {}

  public ChaosReport {
    faults = List.copyOf(faults);
    problems = List.copyOf(problems);
    notes = List.copyOf(notes);
  }

  public boolean ok() {
    return faults.size() == faultsScheduled && faults.stream().allMatch(f -> f.injected().endedNanos() >= 0)
        && failed == 0 && mismatched == 0 && completed == requests && requests > 0;
  }

  /** The report as text, one scenario. */
  public String text() {
    StringBuilder b = new StringBuilder();
    b.append(String.format(Locale.ROOT, "scenario %s: %s; replicas %d; %d streams x %d tokens, seed %d, load %.1f s%n",
        scenario.cliName(), topology, replicas, streams, maxTokens, seed, loadSeconds));
    b.append(String.format(Locale.ROOT, "  faults injected    %d of %d%n", faults.size(), faultsScheduled));
    for (FaultReport f : faults) {
      StallAnalysis a = f.analysis();
      FaultInjector.Injected in = f.injected();
      b.append(String.format(Locale.ROOT, "    at %.2f s: %s%n", in.injectedNanos() / 1e9, f.fault().describe()));
      if (f.fault().kind() == Fault.Kind.RESTART) {
        b.append(in.endedNanos() < 0 ? "      node did not rejoin\n"
            : String.format(Locale.ROOT, "      node rejoined after %.2f s%n", (in.endedNanos() - in.injectedNanos()) / 1e9));
      }
      b.append(String.format(Locale.ROOT, "      streams running across it %d, failed %d; normal ITL %s%n",
          a.affected(), a.failed(), ms(a.normalItlNanos())));
      b.append(String.format(Locale.ROOT, "      stall p50 %s, max %s; recovery %s%n", ms(a.stallPercentileNanos(50)),
          ms(a.maxStallNanos()), a.recoveryNanos() < 0 ? "never (a stream failed)" : ms(a.recoveryNanos())));
    }
    b.append(String.format(Locale.ROOT, "  requests           %d: %d completed, %d failed%n", requests, completed, failed));
    b.append(String.format(Locale.ROOT, "  tokens identical   %s (%d of %d completed requests; %d differ)%n",
        mismatched == 0 && completed > 0 ? "yes" : "no", identical, completed, mismatched));
    for (String p : problems) {
      b.append("  ! ").append(p).append('\n');
    }
    for (String n : notes) {
      b.append("  note: ").append(n).append('\n');
    }
    b.append("  result             ").append(ok() ? "OK: nothing lost" : "FAILED: requests or tokens were lost").append('\n');
    return b.toString();
  }

  private static String ms(long nanos) {
    return nanos < 0 ? "n/a" : String.format(Locale.ROOT, "%.0f ms", nanos / 1e6);
  }

  /** The report as a JSON object (times in milliseconds, -1 where not defined). */
  public ObjectNode json(ObjectMapper mapper) {
    ObjectNode o = mapper.createObjectNode();
    o.put("scenario", scenario.cliName());
    o.put("topology", topology);
    o.put("replicas", replicas);
    o.put("streams", streams);
    o.put("max_tokens", maxTokens);
    o.put("seed", seed);
    o.put("load_seconds", loadSeconds);
    o.put("requests", requests);
    o.put("completed", completed);
    o.put("failed", failed);
    o.put("tokens_identical", mismatched == 0 && completed > 0);
    o.put("identical_requests", identical);
    o.put("mismatched_requests", mismatched);
    o.put("faults_scheduled", faultsScheduled);
    ArrayNode fs = o.putArray("faults");
    for (FaultReport f : faults) {
      ObjectNode j = fs.addObject();
      j.put("fault", f.fault().describe());
      j.put("kind", f.fault().kind().name().toLowerCase(Locale.ROOT));
      j.put("node", f.fault().node());
      j.put("at_ms", f.injected().injectedNanos() / 1e6);
      if (f.fault().kind() == Fault.Kind.RESTART) {
        j.put("rejoin_ms", f.injected().endedNanos() < 0 ? -1 : (f.injected().endedNanos() - f.injected().injectedNanos()) / 1e6);
      }
      StallAnalysis a = f.analysis();
      j.put("affected_requests", a.affected());
      j.put("affected_failed", a.failed());
      j.put("normal_itl_ms", a.normalItlNanos() / 1e6);
      j.put("stall_p50_ms", millis(a.stallPercentileNanos(50)));
      j.put("stall_max_ms", millis(a.maxStallNanos()));
      j.put("recovery_ms", millis(a.recoveryNanos()));
    }
    problems.forEach(o.putArray("problems")::add);
    notes.forEach(o.putArray("notes")::add);
    o.put("ok", ok());
    return o;
  }

  private static double millis(long nanos) {
    return nanos < 0 ? -1 : nanos / 1e6;
  }
}
