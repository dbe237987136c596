package io.moecluster.core.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.moecluster.core.safetensors.SafeTensors;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A deliberately naive, independent transcription of the Hugging Face modeling code
 * ({@code modeling_mixtral.py}, {@code modeling_qwen2_moe.py}, {@code modeling_qwen3_moe.py},
 * {@code modeling_olmoe.py}, transformers 4.5x "eager" attention path) for checking the
 * project's forward pass.
 *
 * <p>Independence: it parses {@code config.json} itself (HF key names and HF defaults, not {@code
 * ModelConfig}), spells the HF tensor names itself (not {@code WeightNames}), reads every weight
 * with {@link SafeTensors#floats} and uses none of the project's kernels, gate, expert batching,
 * dense layer, rotary embedding or KV cache. Every product is a plain nested loop accumulated in
 * {@code double}; the whole causal attention is recomputed from scratch for every call.
 *
 * <p>Precision: everything is computed in double except where HF pins float32 on purpose: the
 * rotary {@code inv_freq} and angles (HF computes them in float32, so the angle at a position is a
 * float32 product) and the router softmax ({@code F.softmax(router_logits, dim=1,
 * dtype=torch.float)}), whose float32 probabilities also decide the top-k. The result is then an
 * approximation of the exact real-number model that is several orders of magnitude closer than
 * any float32 implementation, so the differences a test sees are the implementation's own.
 */
public final class NaiveMoeReference implements AutoCloseable {

  /** HF {@code model_type}. */
  public enum Family {
    MIXTRAL,
    QWEN2_MOE,
    QWEN3_MOE,
    OLMOE
  }

  private final SafeTensors st;
  private final Map<String, float[]> weights = new HashMap<>();

  // ---- config.json, with the defaults of the HF configuration classes ----
  final Family family;
  final int vocab;
  final int hidden;
  final int layers;
  final int heads;
  final int kvHeads;
  final int headDim;
  final int experts;
  final int topK;
  final int ffn;
  final int sharedFfn; // Qwen2-MoE shared_expert_intermediate_size; 0 otherwise
  final boolean normTopkProb;
  final boolean attentionBias;
  final double eps;
  final double ropeTheta;
  final boolean tieWordEmbeddings;

  /** Chosen experts of the last {@link #logits} call: {@code [layer][position][slot]}. */
  private int[][][] lastRouting;
  /** Smallest gap, over the last call, between the k-th and (k+1)-th router probability. */
  private double minRouterMargin;

  private NaiveMoeReference(Path dir) {
    JsonNode c;
    try {
      c = new ObjectMapper().readTree(Files.readString(dir.resolve("config.json")));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    family =
        switch (c.get("model_type").asText()) {
          case "mixtral" -> Family.MIXTRAL;
          case "qwen2_moe" -> Family.QWEN2_MOE;
          case "qwen3_moe" -> Family.QWEN3_MOE;
          case "olmoe" -> Family.OLMOE;
          default -> throw new IllegalArgumentException("model_type " + c.get("model_type"));
        };
    vocab = c.get("vocab_size").asInt();
    hidden = c.get("hidden_size").asInt();
    layers = c.get("num_hidden_layers").asInt();
    heads = c.get("num_attention_heads").asInt();
    kvHeads = intOr(c, "num_key_value_heads", heads);
    // MixtralAttention: self.head_dim = getattr(config, "head_dim", None) or hidden_size // num_heads
    headDim = intOr(c, "head_dim", hidden / heads);
    // MixtralConfig.num_local_experts; the others: num_experts
    experts = family == Family.MIXTRAL ? c.get("num_local_experts").asInt() : c.get("num_experts").asInt();
    topK = c.get("num_experts_per_tok").asInt();
    // Qwen2MoeSparseMoeBlock / Qwen3MoeSparseMoeBlock: intermediate_size=config.moe_intermediate_size
    ffn =
        family == Family.QWEN2_MOE || family == Family.QWEN3_MOE
            ? c.get("moe_intermediate_size").asInt()
            : c.get("intermediate_size").asInt();
    sharedFfn = family == Family.QWEN2_MOE ? intOr(c, "shared_expert_intermediate_size", 0) : 0;
    // MixtralSparseMoeBlock always renormalizes; the others: config.norm_topk_prob (default False)
    normTopkProb = family == Family.MIXTRAL || boolOr(c, "norm_topk_prob", false);
    // Qwen2MoeAttention: q/k/v_proj(bias=True); Qwen3-MoE, OLMoE: bias=config.attention_bias
    attentionBias =
        family == Family.QWEN2_MOE
            || (family != Family.MIXTRAL && boolOr(c, "attention_bias", false));
    eps = c.has("rms_norm_eps") ? c.get("rms_norm_eps").asDouble() : 1e-6;
    ropeTheta = c.has("rope_theta") ? c.get("rope_theta").asDouble() : 10000.0;
    tieWordEmbeddings = boolOr(c, "tie_word_embeddings", false);
    st = SafeTensors.open(dir);
  }

  public static NaiveMoeReference load(Path dir) {
    return new NaiveMoeReference(dir);
  }

  private static int intOr(JsonNode c, String key, int fallback) {
    JsonNode n = c.get(key);
    return n == null || n.isNull() ? fallback : n.asInt();
  }

  private static boolean boolOr(JsonNode c, String key, boolean fallback) {
    JsonNode n = c.get(key);
    return n == null || n.isNull() ? fallback : n.asBoolean();
  }

  public int vocabSize() {
    return vocab;
  }

  /** Experts chosen by the last {@link #logits} call, {@code [layer][position][slot]}. */
  public int[][][] lastRouting() {
    return lastRouting;
  }

  /** The closest top-k decision of the last call (k-th minus (k+1)-th router probability). */
  public double minRouterMargin() {
    return minRouterMargin;
  }

  // ---- weights: HF tensor names, read once with SafeTensors.floats and kept ----

  private float[] w(String name, long... shape) {
    return weights.computeIfAbsent(name, n -> st.floats(n, shape));
  }

  private static String layer(int l) {
    return "model.layers." + l + ".";
  }

  private String expertName(int l, int e, String which) {
    // Mixtral: block_sparse_moe.experts.{e}.w1/w2/w3; the others: mlp.experts.{e}.gate/up/down_proj
    if (family == Family.MIXTRAL) {
      String m =
          switch (which) {
            case "gate" -> "w1";
            case "up" -> "w3";
            default -> "w2";
          };
      return layer(l) + "block_sparse_moe.experts." + e + "." + m + ".weight";
    }
    return layer(l) + "mlp.experts." + e + "." + which + "_proj.weight";
  }

  // ---- the model ----

  /**
   * {@code ForCausalLM.forward(input_ids)} with no cache: logits at every position.
   *
   * @return {@code [tokens.length][vocab]}
   */
  public double[][] logits(int[] tokens) {
    int n = tokens.length;
    lastRouting = new int[layers][n][];
    minRouterMargin = Double.POSITIVE_INFINITY;

    // inputs_embeds = self.embed_tokens(input_ids)
    float[] embed = w("model.embed_tokens.weight", vocab, hidden);
    double[][] h = new double[n][hidden];
    for (int t = 0; t < n; t++) {
      if (tokens[t] < 0 || tokens[t] >= vocab) {
        throw new IllegalArgumentException("token " + tokens[t]);
      }
      for (int i = 0; i < hidden; i++) {
        h[t][i] = embed[tokens[t] * hidden + i];
      }
    }

    // position_embeddings = self.rotary_emb(hidden_states, position_ids), position_ids = arange(n)
    double[][] cos = new double[n][headDim];
    double[][] sin = new double[n][headDim];
    rotary(n, cos, sin);

    for (int l = 0; l < layers; l++) {
      // DecoderLayer.forward:
      //   residual = hidden_states
      //   hidden_states = self.input_layernorm(hidden_states)
      //   hidden_states, _ = self.self_attn(hidden_states, position_embeddings, attention_mask, ...)
      //   hidden_states = residual + hidden_states
      double[][] a = attention(l, rmsNormRows(h, w(layer(l) + "input_layernorm.weight", hidden)), cos, sin);
      add(h, a);
      //   residual = hidden_states
      //   hidden_states = self.post_attention_layernorm(hidden_states)
      //   hidden_states, router_logits = self.block_sparse_moe(hidden_states)   (Qwen/OLMoE: self.mlp)
      //   hidden_states = residual + hidden_states
      double[][] m = sparseMoe(l, rmsNormRows(h, w(layer(l) + "post_attention_layernorm.weight", hidden)));
      add(h, m);
    }

    // hidden_states = self.norm(hidden_states)
    double[][] normed = rmsNormRows(h, w("model.norm.weight", hidden));
    // logits = self.lm_head(hidden_states); tie_weights() makes lm_head.weight the embedding matrix
    float[] head =
        tieWordEmbeddings && !st.contains("lm_head.weight") ? embed : w("lm_head.weight", vocab, hidden);
    double[][] logits = new double[n][];
    for (int t = 0; t < n; t++) {
      logits[t] = linear(head, vocab, hidden, normed[t], null);
    }
    return logits;
  }

  /**
   * Greedy continuation, recomputing the whole sequence from scratch at every step: argmax of the
   * last position's logits (lowest id on ties), appended, {@code steps} times.
   */
  public int[] greedy(int[] prompt, int steps) {
    int[] seq = Arrays.copyOf(prompt, prompt.length + steps);
    for (int s = 0; s < steps; s++) {
      double[][] all = logits(Arrays.copyOf(seq, prompt.length + s));
      seq[prompt.length + s] = argmax(all[all.length - 1]);
    }
    return Arrays.copyOfRange(seq, prompt.length, seq.length);
  }

  public static int argmax(double[] v) {
    int best = 0;
    for (int i = 1; i < v.length; i++) {
      if (v[i] > v[best]) {
        best = i;
      }
    }
    return best;
  }

  /**
   * MixtralRotaryEmbedding (rope_type "default", attention_scaling 1.0):
   *
   * <pre>
   * inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
   * freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
   * emb = torch.cat((freqs, freqs), dim=-1)
   * cos = emb.cos() * self.attention_scaling ; sin = emb.sin() * self.attention_scaling
   * </pre>
   *
   * all in float32 (autocast is disabled there).
   */
  private void rotary(int n, double[][] cos, double[][] sin) {
    int half = headDim / 2;
    float base = (float) ropeTheta;
    float[] invFreq = new float[half];
    for (int i = 0; i < half; i++) {
      float exponent = (float) (2 * i) / (float) headDim; // arange(0, dim, 2).float() / dim
      float pow = (float) Math.pow(base, exponent); // base ** exponent, a float32 tensor
      invFreq[i] = 1.0f / pow; // 1.0 / (...)
    }
    for (int p = 0; p < n; p++) {
      for (int i = 0; i < half; i++) {
        float freq = (float) p * invFreq[i]; // float32 matmul with inner dimension 1
        float c = (float) Math.cos(freq); // emb.cos() in float32
        float s = (float) Math.sin(freq);
        cos[p][i] = c; // cat((freqs, freqs))
        cos[p][i + half] = c;
        sin[p][i] = s;
        sin[p][i + half] = s;
      }
    }
  }

  /** Self-attention over the whole sequence with the causal mask; returns o_proj's output. */
  private double[][] attention(int l, double[][] x, double[][] cos, double[][] sin) {
    int n = x.length;
    int qDim = heads * headDim;
    int kvDim = kvHeads * headDim;
    String p = layer(l) + "self_attn.";
    float[] wq = w(p + "q_proj.weight", qDim, hidden);
    float[] wk = w(p + "k_proj.weight", kvDim, hidden);
    float[] wv = w(p + "v_proj.weight", kvDim, hidden);
    float[] wo = w(p + "o_proj.weight", hidden, qDim);
    float[] bq = attentionBias ? w(p + "q_proj.bias", qDim) : null;
    float[] bk = attentionBias ? w(p + "k_proj.bias", kvDim) : null;
    float[] bv = attentionBias ? w(p + "v_proj.bias", kvDim) : null;

    // q[t][head][d], k[t][kvHead][d], v[t][kvHead][d]
    double[][][] q = new double[n][][];
    double[][][] k = new double[n][][];
    double[][][] v = new double[n][][];
    for (int t = 0; t < n; t++) {
      // query_states = self.q_proj(hidden_states)   (nn.Linear: x @ W^T + b)
      double[] qt = linear(wq, qDim, hidden, x[t], bq);
      double[] kt = linear(wk, kvDim, hidden, x[t], bk);
      double[] vt = linear(wv, kvDim, hidden, x[t], bv);
      if (family == Family.OLMOE) {
        // OlmoeAttention: query_states = self.q_norm(self.q_proj(hidden_states))
        //                 key_states = self.k_norm(self.k_proj(hidden_states))   (before .view)
        qt = rmsNorm(qt, w(p + "q_norm.weight", qDim));
        kt = rmsNorm(kt, w(p + "k_norm.weight", kvDim));
      }
      // .view(hidden_shape)  -> [heads, head_dim]
      q[t] = split(qt, heads);
      k[t] = split(kt, kvHeads);
      v[t] = split(vt, kvHeads);
      if (family == Family.QWEN3_MOE) {
        // Qwen3MoeAttention: query_states = self.q_norm(self.q_proj(x).view(hidden_shape))
        //                    key_states = self.k_norm(self.k_proj(x).view(hidden_shape))  (per head)
        float[] qn = w(p + "q_norm.weight", headDim);
        float[] kn = w(p + "k_norm.weight", headDim);
        for (int hh = 0; hh < heads; hh++) {
          q[t][hh] = rmsNorm(q[t][hh], qn);
        }
        for (int hh = 0; hh < kvHeads; hh++) {
          k[t][hh] = rmsNorm(k[t][hh], kn);
        }
      }
      // query_states, key_states = apply_rotary_pos_emb(query_states, key_states, cos, sin)
      for (int hh = 0; hh < heads; hh++) {
        q[t][hh] = applyRope(q[t][hh], cos[t], sin[t]);
      }
      for (int hh = 0; hh < kvHeads; hh++) {
        k[t][hh] = applyRope(k[t][hh], cos[t], sin[t]);
      }
    }

    // eager_attention_forward
    int groups = heads / kvHeads; // num_key_value_groups
    double scaling = Math.pow(headDim, -0.5); // self.scaling = self.head_dim ** -0.5
    double[][] out = new double[n][qDim];
    for (int hh = 0; hh < heads; hh++) {
      // key_states = repeat_kv(key, n_rep): head hh reads kv head hh // n_rep
      int kvh = hh / groups;
      for (int i = 0; i < n; i++) {
        // attn_weights = torch.matmul(query, key_states.transpose(2, 3)) * scaling
        // attn_weights = attn_weights + causal_mask    (min value where j > i)
        double[] s = new double[n];
        for (int j = 0; j < n; j++) {
          if (j > i) {
            s[j] = Double.NEGATIVE_INFINITY;
            continue;
          }
          double dot = 0;
          for (int d = 0; d < headDim; d++) {
            dot += q[i][hh][d] * k[j][kvh][d];
          }
          s[j] = dot * scaling;
        }
        // attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32)
        double[] pr = softmax(s);
        // attn_output = torch.matmul(attn_weights, value_states); .transpose(1, 2).reshape(..., -1)
        for (int j = 0; j <= i; j++) {
          for (int d = 0; d < headDim; d++) {
            out[i][hh * headDim + d] += pr[j] * v[j][kvh][d];
          }
        }
      }
    }
    // attn_output = self.o_proj(attn_output)
    double[][] o = new double[n][];
    for (int t = 0; t < n; t++) {
      o[t] = linear(wo, hidden, qDim, out[t], null);
    }
    return o;
  }

  /**
   * apply_rotary_pos_emb: {@code q_embed = (q * cos) + (rotate_half(q) * sin)} with
   * {@code rotate_half(x) = cat((-x[..., d/2:], x[..., :d/2]), dim=-1)}.
   */
  private double[] applyRope(double[] x, double[] cos, double[] sin) {
    int half = headDim / 2;
    double[] rotated = new double[headDim];
    for (int i = 0; i < half; i++) {
      rotated[i] = -x[i + half];
      rotated[i + half] = x[i];
    }
    double[] y = new double[headDim];
    for (int i = 0; i < headDim; i++) {
      y[i] = x[i] * cos[i] + rotated[i] * sin[i];
    }
    return y;
  }

  /** The sparse MoE block of layer {@code l} (+ Qwen2-MoE's shared expert) for every row. */
  private double[][] sparseMoe(int l, double[][] x) {
    int n = x.length;
    String router =
        family == Family.MIXTRAL ? layer(l) + "block_sparse_moe.gate.weight" : layer(l) + "mlp.gate.weight";
    float[] gate = w(router, experts, hidden);
    double[][] out = new double[n][hidden];
    for (int t = 0; t < n; t++) {
      // router_logits = self.gate(hidden_states)
      double[] logits = linear(gate, experts, hidden, x[t], null);
      // routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
      float[] prob = softmaxFloat32(logits);
      // routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
      int[] order = topK(prob, topK + (topK < experts ? 1 : 0));
      int[] selected = Arrays.copyOf(order, topK);
      if (topK < experts) {
        minRouterMargin = Math.min(minRouterMargin, prob[order[topK - 1]] - prob[order[topK]]);
      }
      double[] rw = new double[topK];
      double sum = 0;
      for (int s = 0; s < topK; s++) {
        rw[s] = prob[selected[s]];
        sum += rw[s];
      }
      // Mixtral: routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
      // Qwen/OLMoE: if self.norm_topk_prob: routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
      if (normTopkProb) {
        for (int s = 0; s < topK; s++) {
          rw[s] /= sum;
        }
      }
      lastRouting[l][t] = selected;
      // for expert_idx in range(num_experts): ... current_hidden_states = expert_layer(current_state)
      //   * routing_weights[top_x, idx, None]; final_hidden_states.index_add_(0, top_x, ...)
      for (int s = 0; s < topK; s++) {
        int e = selected[s];
        double[] y =
            swiGlu(
                w(expertName(l, e, "gate"), ffn, hidden),
                w(expertName(l, e, "up"), ffn, hidden),
                w(expertName(l, e, "down"), hidden, ffn),
                ffn,
                x[t]);
        for (int i = 0; i < hidden; i++) {
          out[t][i] += rw[s] * y[i];
        }
      }
      if (family == Family.QWEN2_MOE && sharedFfn > 0) {
        // shared_expert_output = self.shared_expert(hidden_states)
        String sp = layer(l) + "mlp.shared_expert.";
        double[] shared =
            swiGlu(
                w(sp + "gate_proj.weight", sharedFfn, hidden),
                w(sp + "up_proj.weight", sharedFfn, hidden),
                w(sp + "down_proj.weight", hidden, sharedFfn),
                sharedFfn,
                x[t]);
        // shared_expert_output = F.sigmoid(self.shared_expert_gate(hidden_states)) * shared_expert_output
        double g = linear(w(layer(l) + "mlp.shared_expert_gate.weight", 1, hidden), 1, hidden, x[t], null)[0];
        double sig = 1.0 / (1.0 + Math.exp(-g));
        // final_hidden_states = final_hidden_states + shared_expert_output
        for (int i = 0; i < hidden; i++) {
          out[t][i] += sig * shared[i];
        }
      }
    }
    return out;
  }

  /**
   * MixtralBlockSparseTop2MLP / Qwen2MoeMLP / OlmoeMLP: {@code w2(act_fn(w1(x)) * w3(x))}, i.e.
   * {@code down_proj(silu(gate_proj(x)) * up_proj(x))}, act_fn = silu.
   */
  private double[] swiGlu(float[] w1, float[] w3, float[] w2, int inner, double[] x) {
    double[] g = linear(w1, inner, hidden, x, null);
    double[] u = linear(w3, inner, hidden, x, null);
    double[] a = new double[inner];
    for (int i = 0; i < inner; i++) {
      double silu = g[i] / (1.0 + Math.exp(-g[i])); // silu(x) = x * sigmoid(x)
      a[i] = silu * u[i];
    }
    return linear(w2, hidden, inner, a, null);
  }

  // ---- plain helpers ----

  /** nn.Linear: {@code y = x W^T + b} with W {@code [out, in]} row-major. */
  private static double[] linear(float[] wgt, int out, int in, double[] x, float[] bias) {
    double[] y = new double[out];
    for (int o = 0; o < out; o++) {
      double sum = 0;
      int base = o * in;
      for (int i = 0; i < in; i++) {
        sum += wgt[base + i] * x[i];
      }
      y[o] = bias == null ? sum : sum + bias[o];
    }
    return y;
  }

  /**
   * MixtralRMSNorm: {@code variance = x.pow(2).mean(-1, keepdim=True); x = x * torch.rsqrt(variance
   * + eps); return self.weight * x}.
   */
  private double[] rmsNorm(double[] x, float[] weight) {
    double ss = 0;
    for (double v : x) {
      ss += v * v;
    }
    double inv = 1.0 / Math.sqrt(ss / x.length + eps);
    double[] y = new double[x.length];
    for (int i = 0; i < x.length; i++) {
      y[i] = weight[i] * (x[i] * inv);
    }
    return y;
  }

  private double[][] rmsNormRows(double[][] x, float[] weight) {
    double[][] y = new double[x.length][];
    for (int t = 0; t < x.length; t++) {
      y[t] = rmsNorm(x[t], weight);
    }
    return y;
  }

  private double[][] split(double[] flat, int count) {
    double[][] out = new double[count][];
    for (int i = 0; i < count; i++) {
      out[i] = Arrays.copyOfRange(flat, i * headDim, (i + 1) * headDim);
    }
    return out;
  }

  private static void add(double[][] acc, double[][] delta) {
    for (int t = 0; t < acc.length; t++) {
      for (int i = 0; i < acc[t].length; i++) {
        acc[t][i] += delta[t][i];
      }
    }
  }

  private static double[] softmax(double[] s) {
    double max = Double.NEGATIVE_INFINITY;
    for (double v : s) {
      max = Math.max(max, v);
    }
    double sum = 0;
    double[] p = new double[s.length];
    for (int i = 0; i < s.length; i++) {
      p[i] = Math.exp(s[i] - max); // exp(-inf) = 0 for masked positions
      sum += p[i];
    }
    for (int i = 0; i < s.length; i++) {
      p[i] /= sum;
    }
    return p;
  }

  /** Softmax whose result is float32, as {@code F.softmax(..., dtype=torch.float)}. */
  private static float[] softmaxFloat32(double[] logits) {
    float[] in = new float[logits.length];
    for (int i = 0; i < in.length; i++) {
      in[i] = (float) logits[i];
    }
    float max = Float.NEGATIVE_INFINITY;
    for (float v : in) {
      max = Math.max(max, v);
    }
    double sum = 0;
    double[] e = new double[in.length];
    for (int i = 0; i < in.length; i++) {
      e[i] = Math.exp(in[i] - max);
      sum += e[i];
    }
    float[] p = new float[in.length];
    for (int i = 0; i < in.length; i++) {
      p[i] = (float) (e[i] / sum);
    }
    return p;
  }

  /** Indices of the {@code k} largest values, descending; ties to the lower index. */
  private static int[] topK(float[] v, int k) {
    List<Integer> idx = new ArrayList<>();
    for (int i = 0; i < v.length; i++) {
      idx.add(i);
    }
    idx.sort((a, b) -> v[a] != v[b] ? Float.compare(v[b], v[a]) : Integer.compare(a, b));
    int[] out = new int[k];
    for (int i = 0; i < k; i++) {
      out[i] = idx.get(i);
    }
    return out;
  }

  @Override
  public void close() {
    weights.clear();
    st.close();
  }
}
