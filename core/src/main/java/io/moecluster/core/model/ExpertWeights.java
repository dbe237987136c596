package io.moecluster.core.model;

import io.moecluster.core.tensor.Matrix;
import java.util.function.UnaryOperator;

/**
 * One SwiGLU expert: {@code down(silu(gate·x) ⊙ up·x)}; Mixtral calls the three w1, w3 and w2.
 *
 * @param gate w1 / gate_proj, {@code [ffn, hidden]}
 * @param up w3 / up_proj, {@code [ffn, hidden]}
 * @param down w2 / down_proj, {@code [hidden, ffn]}
 */
public record ExpertWeights(Matrix gate, Matrix up, Matrix down) {

  public ExpertWeights {
    if (gate.rows() != up.rows() || gate.cols() != up.cols()) {
      throw new IllegalArgumentException(gate.name() + " and " + up.name() + " differ in shape");
    }
    if (down.rows() != gate.cols() || down.cols() != gate.rows()) {
      throw new IllegalArgumentException(down.name() + " does not match " + gate.name());
    }
  }

  public int hiddenSize() {
    return gate.cols();
  }

  public int ffnSize() {
    return gate.rows();
  }

  /** This expert with each of its matrices passed through {@code place} once. */
  ExpertWeights withMatrices(UnaryOperator<Matrix> place) {
    return new ExpertWeights(place.apply(gate), place.apply(up), place.apply(down));
  }

  /** Bytes one token must read through this expert. */
  public long byteSize() {
    return gate.byteSize() + up.byteSize() + down.byteSize();
  }
}
