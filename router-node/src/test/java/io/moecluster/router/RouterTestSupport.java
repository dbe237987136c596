package io.moecluster.router;

import io.moecluster.proto.cluster.v1.RouterCommand;
import io.moecluster.proto.cluster.v1.SamplingSpec;
import io.moecluster.proto.cluster.v1.SequenceEvent;
import io.moecluster.proto.cluster.v1.Submit;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.pekko.actor.testkit.typed.javadsl.TestProbe;
import org.apache.pekko.actor.typed.ActorRefResolver;
import org.apache.pekko.actor.typed.ActorSystem;

/** Builds router messages and reads a sequence's events, for tests. */
final class RouterTestSupport {
  private RouterTestSupport() {}

  static RouterCommand submit(ActorSystem<?> system, String id, int[] prompt, SamplingSpec sampling, int maxTokens,
      boolean ignoreEos, TestProbe<SequenceEvent> replyTo) {
    Submit.Builder b = Submit.newBuilder()
        .setRequestId(id)
        .setSampling(sampling)
        .setMaxTokens(maxTokens)
        .setIgnoreEos(ignoreEos)
        .setReplyTo(ActorRefResolver.get(system).toSerializationFormat(replyTo.getRef()));
    for (int t : prompt) {
      b.addPromptIds(t);
    }
    return RouterCommand.newBuilder().setSubmit(b).build();
  }

  static SamplingSpec greedy() {
    return SamplingSpec.newBuilder().setTemperature(0).setTopP(1).setRepetitionPenalty(1).build();
  }

  /** Every event of one sequence up to and including its end. */
  static List<SequenceEvent> events(TestProbe<SequenceEvent> probe, Duration timeout) {
    List<SequenceEvent> events = new ArrayList<>();
    while (true) {
      SequenceEvent e = probe.receiveMessage(timeout);
      events.add(e);
      if (e.hasFinished() || e.hasFailed()) {
        return events;
      }
    }
  }

  static int[] tokenIds(List<SequenceEvent> events) {
    return events.stream().filter(SequenceEvent::hasToken).mapToInt(e -> e.getToken().getTokenId()).toArray();
  }

  static SequenceEvent last(List<SequenceEvent> events) {
    return events.get(events.size() - 1);
  }
}
