package io.moecluster.core.model;

import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.config.QkNorm;
import io.moecluster.core.config.WeightNames;
import io.moecluster.core.safetensors.SafeTensors;
import io.moecluster.core.tensor.Matrix;
import java.util.ArrayList;
import java.util.List;
import java.util.function.UnaryOperator;

/**
 * Every weight of the model except the routed experts: embeddings, the per-layer attention,
 * norms and gates, the final norm and the LM head. Matrices are views into the mapped
 * checkpoint or copies of them ({@link WeightPlacement}); the small vectors (norms, biases) are
 * copied to float arrays.
 *
 * @param embedTokens {@code [vocab, hidden]}
 * @param finalNorm {@code [hidden]}
 * @param lmHead {@code [vocab, hidden]} (the embedding itself when tied)
 */
public record DenseWeights(
    Matrix embedTokens, List<LayerWeights> layers, float[] finalNorm, Matrix lmHead) {

  public DenseWeights {
    layers = List.copyOf(layers);
  }

  /** Reads and shape-checks every dense tensor; a missing or misshapen one names itself. */
  public static DenseWeights load(SafeTensors st, ModelConfig c) {
    WeightNames n = c.weightNames();
    int hidden = c.hiddenSize();
    Matrix embed = st.matrix(n.embedTokens(), c.vocabSize(), hidden);
    List<LayerWeights> layers = new ArrayList<>(c.numLayers());
    for (int l = 0; l < c.numLayers(); l++) {
      layers.add(loadLayer(st, c, n, l));
    }
    // HF ties the head to the embedding whenever the config says so, even if lm_head is stored.
    Matrix lmHead = c.tieWordEmbeddings() ? embed : st.matrix(n.lmHead(), c.vocabSize(), hidden);
    return new DenseWeights(embed, layers, st.floats(n.finalNorm(), hidden), lmHead);
  }

  /**
   * These weights with every matrix passed through {@code place} once (e.g. {@link
   * WeightCopies#copy}); a head tied to the embedding stays tied.
   */
  DenseWeights withMatrices(UnaryOperator<Matrix> place) {
    Matrix embed = place.apply(embedTokens);
    return new DenseWeights(embed, layers.stream().map(l -> l.withMatrices(place)).toList(), finalNorm,
        lmHead == embedTokens ? embed : place.apply(lmHead));
  }

  /** Bytes of all the matrices (the tied LM head counted once). */
  public long matrixBytes() {
    long bytes = embedTokens.byteSize() + (lmHead == embedTokens ? 0 : lmHead.byteSize());
    for (LayerWeights l : layers) {
      AttentionWeights a = l.attention();
      bytes += a.q().byteSize() + a.k().byteSize() + a.v().byteSize()
          + a.o().byteSize() + l.router().byteSize();
      if (l.sharedExpert() != null) {
        bytes += l.sharedExpert().byteSize() + l.sharedExpertGate().byteSize();
      }
    }
    return bytes;
  }

  private static LayerWeights loadLayer(SafeTensors st, ModelConfig c, WeightNames n, int l) {
    int hidden = c.hiddenSize();
    int qDim = c.numHeads() * c.headDim();
    int kvDim = c.numKvHeads() * c.headDim();
    boolean bias = c.attentionBias();
    float[] qNorm = null;
    float[] kNorm = null;
    if (c.qkNorm() == QkNorm.PER_HEAD) {
      qNorm = st.floats(n.qkNorm(l, 'q'), c.headDim());
      kNorm = st.floats(n.qkNorm(l, 'k'), c.headDim());
    } else if (c.qkNorm() == QkNorm.FULL) {
      qNorm = st.floats(n.qkNorm(l, 'q'), qDim);
      kNorm = st.floats(n.qkNorm(l, 'k'), kvDim);
    }
    var attention =
        new AttentionWeights(
            st.matrix(n.attention(l, 'q'), qDim, hidden),
            st.matrix(n.attention(l, 'k'), kvDim, hidden),
            st.matrix(n.attention(l, 'v'), kvDim, hidden),
            st.matrix(n.attention(l, 'o'), hidden, qDim),
            bias ? st.floats(n.attentionBias(l, 'q'), qDim) : null,
            bias ? st.floats(n.attentionBias(l, 'k'), kvDim) : null,
            bias ? st.floats(n.attentionBias(l, 'v'), kvDim) : null,
            qNorm,
            kNorm);
    ExpertWeights shared = null;
    Matrix sharedGate = null;
    if (c.hasSharedExpert()) {
      int ffn = c.sharedExpertIntermediateSize();
      shared =
          new ExpertWeights(
              st.matrix(n.sharedExpert(l, "gate"), ffn, hidden),
              st.matrix(n.sharedExpert(l, "up"), ffn, hidden),
              st.matrix(n.sharedExpert(l, "down"), hidden, ffn));
      sharedGate = st.matrix(n.sharedExpertGate(l), 1, hidden);
    }
    return new LayerWeights(
        st.floats(n.attentionNorm(l), hidden),
        attention,
        st.floats(n.ffnNorm(l), hidden),
        st.matrix(n.router(l), c.numExperts(), hidden),
        shared,
        sharedGate);
  }
}
