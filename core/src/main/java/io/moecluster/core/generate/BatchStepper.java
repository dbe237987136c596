package io.moecluster.core.generate;

import io.moecluster.core.model.ForwardPass;
import io.moecluster.core.model.StepRow;
import java.util.ArrayList;
import java.util.List;

/**
 * One step of continuous batching: every running sequence contributes its rows (a whole prompt
 * for a sequence that just joined, else its last token), one forward pass runs them all, and each
 * sequence samples from its own logits. Sequences join and leave between steps; the caller owns
 * the set.
 */
public final class BatchStepper {
  private final ForwardPass forward;

  public BatchStepper(ForwardPass forward) {
    this.forward = forward;
  }

  /** Runs one step over the unfinished sequences among {@code running}. */
  public void step(List<Sequence> running) {
    List<StepRow> rows = new ArrayList<>();
    List<Sequence> owners = new ArrayList<>();
    for (Sequence s : running) {
      for (StepRow row : s.nextRows()) {
        rows.add(row);
        owners.add(s);
      }
    }
    if (rows.isEmpty()) {
      return;
    }
    float[][] logits = forward.step(rows);
    for (int r = 0; r < rows.size(); r++) {
      if (logits[r] != null) {
        owners.get(r).accept(logits[r]);
      }
    }
  }
}
