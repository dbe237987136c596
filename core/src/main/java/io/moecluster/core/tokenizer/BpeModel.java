package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.google.common.cache.Cache;
import com.google.common.cache.CacheBuilder;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.PriorityQueue;

/**
 * The tokenizer.json "model" of type BPE: splits one pre-tokenized word into vocabulary ids by
 * applying merges in rank order. Words are merged on a linked list of symbols with a priority queue
 * of candidate pairs, so a long word costs O(n log n), and results are kept in a bounded per-word
 * cache because natural text repeats words constantly.
 */
final class BpeModel {
  private static final int CACHE_SIZE = 20_000;
  private static final int MAX_CACHED_WORD_LENGTH = 128;

  /** One merge rule: the pair it applies to ranks {@code rank}, and produces {@code mergedId}. */
  private record Merge(int rank, int mergedId) {}

  private final Map<String, Integer> vocab;
  private final Map<Long, Merge> merges;
  private final int unkId;
  private final boolean fuseUnk;
  private final boolean byteFallback;
  private final boolean ignoreMerges;
  private final String continuingSubwordPrefix;
  private final String endOfWordSuffix;
  private final int[] byteTokenIds;
  private final Cache<String, int[]> cache =
      CacheBuilder.newBuilder().maximumSize(CACHE_SIZE).build();

  private BpeModel(
      Map<String, Integer> vocab,
      Map<Long, Merge> merges,
      int unkId,
      boolean fuseUnk,
      boolean byteFallback,
      boolean ignoreMerges,
      String continuingSubwordPrefix,
      String endOfWordSuffix) {
    this.vocab = vocab;
    this.merges = merges;
    this.unkId = unkId;
    this.fuseUnk = fuseUnk;
    this.byteFallback = byteFallback;
    this.ignoreMerges = ignoreMerges;
    this.continuingSubwordPrefix = continuingSubwordPrefix;
    this.endOfWordSuffix = endOfWordSuffix;
    this.byteTokenIds = new int[256];
    for (int b = 0; b < 256; b++) {
      byteTokenIds[b] = vocab.getOrDefault(byteTokenName(b), -1);
    }
  }

  static String byteTokenName(int unsignedByte) {
    return String.format("<0x%02X>", unsignedByte);
  }

  static BpeModel fromJson(JsonNode model, String source) {
    String type = JsonFields.text(model, "type", "BPE");
    if (!type.equals("BPE")) {
      throw new TokenizerException(JsonFields.unsupported(source, "model", type, "BPE"));
    }
    JsonNode vocabNode = JsonFields.required(model, "vocab", source, "the BPE model");
    if (!vocabNode.isObject()) {
      throw new TokenizerException(source + ": model.vocab must be an object of token -> id");
    }
    Map<String, Integer> vocab = new HashMap<>(vocabNode.size() * 2);
    for (Map.Entry<String, JsonNode> entry : vocabNode.properties()) {
      vocab.put(entry.getKey(), entry.getValue().asInt());
    }
    Map<Long, Merge> merges = new HashMap<>();
    JsonNode mergesNode = model.get("merges");
    if (mergesNode != null && !mergesNode.isNull()) {
      int rank = 0;
      for (JsonNode merge : mergesNode) {
        String[] pair = mergePair(merge, vocab, source);
        if (pair != null) {
          Integer left = vocab.get(pair[0]);
          Integer right = vocab.get(pair[1]);
          Integer merged = vocab.get(pair[0] + pair[1]);
          if (left != null && right != null && merged != null) {
            merges.putIfAbsent(pairKey(left, right), new Merge(rank, merged));
          }
        }
        rank++;
      }
    }
    String unk = JsonFields.text(model, "unk_token", null);
    int unkId = unk == null ? -1 : vocab.getOrDefault(unk, -1);
    return new BpeModel(
        vocab,
        merges,
        unkId,
        JsonFields.bool(model, "fuse_unk", false),
        JsonFields.bool(model, "byte_fallback", false),
        JsonFields.bool(model, "ignore_merges", false),
        JsonFields.text(model, "continuing_subword_prefix", ""),
        JsonFields.text(model, "end_of_word_suffix", ""));
  }

  /**
   * A merge is "a b" or ["a", "b"]. Some published files have "a b" entries whose tokens contain
   * spaces themselves (Llama 2's " "); those are resolved by the split whose parts and result are
   * all in the vocabulary, and skipped when there is none, as they can never fire.
   */
  private static String[] mergePair(JsonNode merge, Map<String, Integer> vocab, String source) {
    if (merge.isArray() && merge.size() == 2) {
      return new String[] {merge.get(0).asText(), merge.get(1).asText()};
    }
    if (!merge.isTextual()) {
      throw new TokenizerException(
          source
              + ": model.merges entries must be \"a b\" strings or [a, b] pairs, found "
              + merge);
    }
    String text = merge.asText();
    int space = text.indexOf(' ');
    if (space >= 0 && text.indexOf(' ', space + 1) < 0) {
      return new String[] {text.substring(0, space), text.substring(space + 1)};
    }
    for (int i = text.indexOf(' '); i >= 0; i = text.indexOf(' ', i + 1)) {
      String left = text.substring(0, i);
      String right = text.substring(i + 1);
      if (vocab.containsKey(left) && vocab.containsKey(right) && vocab.containsKey(left + right)) {
        return new String[] {left, right};
      }
    }
    return null;
  }

  private static long pairKey(int left, int right) {
    return ((long) left << 32) | (right & 0xFFFFFFFFL);
  }

  Map<String, Integer> vocab() {
    return vocab;
  }

  /** Appends the ids of one pre-tokenized word. */
  void tokenize(String word, IntArrayBuilder out) {
    if (word.isEmpty()) {
      return;
    }
    if (word.length() > MAX_CACHED_WORD_LENGTH) {
      out.addAll(tokenizeUncached(word));
      return;
    }
    int[] ids = cache.getIfPresent(word);
    if (ids == null) {
      ids = tokenizeUncached(word);
      cache.put(word, ids);
    }
    out.addAll(ids);
  }

  private int[] tokenizeUncached(String word) {
    if (ignoreMerges && vocab.containsKey(word)) {
      return new int[] {vocab.get(word)};
    }
    int[] symbols = initialSymbols(word);
    return merge(symbols);
  }

  private int[] initialSymbols(String word) {
    IntArrayBuilder ids = new IntArrayBuilder(word.length());
    boolean previousUnk = false;
    for (int i = 0; i < word.length(); ) {
      int codePoint = word.codePointAt(i);
      int end = i + Character.charCount(codePoint);
      String symbol = word.substring(i, end);
      if (i > 0) {
        symbol = continuingSubwordPrefix + symbol;
      }
      if (end == word.length()) {
        symbol = symbol + endOfWordSuffix;
      }
      Integer id = vocab.get(symbol);
      if (id != null) {
        ids.add(id);
        previousUnk = false;
      } else if (byteFallback && addBytes(word.substring(i, end), ids)) {
        previousUnk = false;
      } else {
        if (unkId < 0) {
          throw new TokenizerException(
              "tokenizer.json: the character U+"
                  + Integer.toHexString(codePoint).toUpperCase()
                  + " is not in the BPE vocabulary and the model has no unk_token or byte"
                  + " fallback; use a tokenizer that sets model.unk_token or byte_fallback");
        }
        if (!(fuseUnk && previousUnk)) {
          ids.add(unkId);
        }
        previousUnk = true;
      }
      i = end;
    }
    return ids.toArray();
  }

  private boolean addBytes(String character, IntArrayBuilder ids) {
    byte[] bytes = character.getBytes(StandardCharsets.UTF_8);
    for (byte b : bytes) {
      if (byteTokenIds[b & 0xFF] < 0) {
        return false;
      }
    }
    for (byte b : bytes) {
      ids.add(byteTokenIds[b & 0xFF]);
    }
    return true;
  }

  /** Applies merges lowest rank first; ties go to the leftmost pair, as in HF tokenizers. */
  private int[] merge(int[] ids) {
    int n = ids.length;
    if (n < 2) {
      return ids;
    }
    int[] next = new int[n];
    int[] prev = new int[n];
    boolean[] alive = new boolean[n];
    for (int i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
      alive[i] = true;
    }
    // Entries pack (rank, left position) into one long so the natural order is rank, then position.
    PriorityQueue<Long> queue = new PriorityQueue<>();
    for (int i = 0; i + 1 < n; i++) {
      offer(queue, ids, i, i + 1);
    }
    int remaining = n;
    while (!queue.isEmpty()) {
      long entry = queue.poll();
      int rank = (int) (entry >>> 32);
      int left = (int) entry;
      int right = alive[left] ? next[left] : -1;
      if (right < 0) {
        continue;
      }
      Merge merge = merges.get(pairKey(ids[left], ids[right]));
      if (merge == null || merge.rank() != rank) {
        continue; // stale: one side was merged since this entry was queued
      }
      ids[left] = merge.mergedId();
      alive[right] = false;
      next[left] = next[right];
      if (next[right] >= 0) {
        prev[next[right]] = left;
      }
      remaining--;
      if (prev[left] >= 0) {
        offer(queue, ids, prev[left], left);
      }
      if (next[left] >= 0) {
        offer(queue, ids, left, next[left]);
      }
    }
    int[] result = new int[remaining];
    int count = 0;
    for (int i = 0; i >= 0; i = next[i]) {
      result[count++] = ids[i];
    }
    return result;
  }

  private void offer(PriorityQueue<Long> queue, int[] ids, int left, int right) {
    Merge merge = merges.get(pairKey(ids[left], ids[right]));
    if (merge != null) {
      queue.add(((long) merge.rank() << 32) | left);
    }
  }
}
