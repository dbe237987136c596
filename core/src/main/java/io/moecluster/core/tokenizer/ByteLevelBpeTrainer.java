package io.moecluster.core.tokenizer;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.PriorityQueue;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Trains a small GPT-2-style byte-level BPE tokenizer, so tests and toy models have a real
 * tokenizer.json without downloading one. Every byte is in the vocabulary, so any text encodes.
 * Training is deterministic: equal pair counts are broken by the pair's strings.
 */
public final class ByteLevelBpeTrainer {
  static final String BOS = "<s>";
  static final String EOS = "</s>";
  private static final int SPECIAL_COUNT = 2;
  private static final int MIN_VOCAB = SPECIAL_COUNT + 256;
  private static final String CORPUS_RESOURCE = "corpus.txt";
  private static final String CHAT_TEMPLATE =
      "{{ bos_token }}{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n"
          + "{% endfor %}{% if add_generation_prompt %}### assistant:\n{% endif %}";
  private static final ObjectMapper MAPPER = new ObjectMapper();

  private ByteLevelBpeTrainer() {}

  /**
   * Learns byte-level BPE merges from text; returns the tokenizer.json and tokenizer_config.json
   * texts. Deterministic.
   */
  public static TrainedTokenizer train(String corpus, int targetVocabSize) {
    if (targetVocabSize < MIN_VOCAB) {
      throw new IllegalArgumentException(
          "targetVocabSize must be at least " + MIN_VOCAB + " (2 special tokens + 256 bytes)");
    }
    List<String> symbols = new ArrayList<>();
    symbols.add(BOS);
    symbols.add(EOS);
    for (int b : ByteLevelAlphabet.BYTE_ORDER) {
      symbols.add(String.valueOf(ByteLevelAlphabet.charOf(b)));
    }
    List<String> merges = new Merger(countWords(corpus), symbols).run(targetVocabSize);
    return new TrainedTokenizer(
        tokenizerJson(symbols, merges), tokenizerConfigJson(), symbols.size());
  }

  /** Trains on the bundled public-domain corpus (US founding documents and Lincoln speeches). */
  public static TrainedTokenizer trainOnBundledCorpus(int targetVocabSize) {
    try (InputStream in = ByteLevelBpeTrainer.class.getResourceAsStream(CORPUS_RESOURCE)) {
      if (in == null) {
        throw new TokenizerException(
            "The bundled corpus " + CORPUS_RESOURCE + " is missing from the core jar; rebuild it");
      }
      return train(new String(in.readAllBytes(), StandardCharsets.UTF_8), targetVocabSize);
    } catch (IOException e) {
      throw new TokenizerException("Cannot read the bundled corpus: " + e.getMessage(), e);
    }
  }

  /** Byte-level words and their counts, sorted so that training does not depend on hash order. */
  private static TreeMap<String, Integer> countWords(String corpus) {
    Pattern words = HfRegex.compile(HfRegex.GPT2_PATTERN, "GPT-2 pattern");
    TreeMap<String, Integer> counts = new TreeMap<>();
    Matcher matcher = words.matcher(corpus);
    while (matcher.find()) {
      counts.merge(ByteLevelAlphabet.encode(matcher.group()), 1, Integer::sum);
    }
    return counts;
  }

  /**
   * Incremental BPE: pair counts are updated only for the words containing the merged pair, and a
   * lazily corrected priority queue finds the most frequent pair.
   */
  private static final class Merger {
    private final List<String> symbols;
    private final int[][] words;
    private final int[] wordCounts;
    private final Map<Long, Integer> pairCounts = new HashMap<>();
    private final Map<Long, Set<Integer>> pairWords = new HashMap<>();
    private final PriorityQueue<long[]> queue;

    Merger(TreeMap<String, Integer> counts, List<String> symbols) {
      this.symbols = symbols;
      Map<Character, Integer> charIds = new HashMap<>();
      for (int i = SPECIAL_COUNT; i < symbols.size(); i++) {
        charIds.put(symbols.get(i).charAt(0), i);
      }
      this.words = new int[counts.size()][];
      this.wordCounts = new int[counts.size()];
      int w = 0;
      for (Map.Entry<String, Integer> entry : counts.entrySet()) {
        String word = entry.getKey();
        int[] ids = new int[word.length()];
        for (int i = 0; i < ids.length; i++) {
          ids[i] = charIds.get(word.charAt(i));
        }
        words[w] = ids;
        wordCounts[w] = entry.getValue();
        w++;
      }
      // Entries are {count, left, right}: highest count first, then the lexicographically
      // smallest pair.
      this.queue =
          new PriorityQueue<>(
              (a, b) -> {
                if (a[0] != b[0]) {
                  return Long.compare(b[0], a[0]);
                }
                int left = symbols.get((int) a[1]).compareTo(symbols.get((int) b[1]));
                return left != 0
                    ? left
                    : symbols.get((int) a[2]).compareTo(symbols.get((int) b[2]));
              });
      for (int i = 0; i < words.length; i++) {
        addPairs(i, +1);
      }
      pairCounts.forEach((key, count) -> queue.add(entry(count, key)));
    }

    private static long key(int left, int right) {
      return ((long) left << 32) | right;
    }

    private static long[] entry(int count, long key) {
      return new long[] {count, key >>> 32, key & 0xFFFFFFFFL};
    }

    private void addPairs(int word, int sign) {
      int[] ids = words[word];
      for (int i = 0; i + 1 < ids.length; i++) {
        long key = key(ids[i], ids[i + 1]);
        pairCounts.merge(key, sign * wordCounts[word], Integer::sum);
        if (sign > 0) {
          pairWords.computeIfAbsent(key, k -> new HashSet<>()).add(word);
        }
      }
    }

    List<String> run(int targetVocabSize) {
      List<String> merges = new ArrayList<>();
      while (symbols.size() < targetVocabSize && !queue.isEmpty()) {
        long[] top = queue.poll();
        long key = key((int) top[1], (int) top[2]);
        int current = pairCounts.getOrDefault(key, 0);
        if (current != top[0]) {
          if (current > 0) {
            queue.add(entry(current, key)); // counts only fall, so re-queue at the true count
          }
          continue;
        }
        if (current < 2) {
          break;
        }
        int left = (int) top[1];
        int right = (int) top[2];
        int merged = symbols.size();
        symbols.add(symbols.get(left) + symbols.get(right));
        merges.add(symbols.get(left) + " " + symbols.get(right));
        applyMerge(left, right, merged);
      }
      return merges;
    }

    private void applyMerge(int left, int right, int merged) {
      Set<Long> touched = new HashSet<>();
      for (int word : pairWords.getOrDefault(key(left, right), Set.of())) {
        int[] ids = words[word];
        addPairs(word, -1);
        int[] rewritten = new int[ids.length];
        int n = 0;
        for (int i = 0; i < ids.length; i++) {
          if (i + 1 < ids.length && ids[i] == left && ids[i + 1] == right) {
            rewritten[n++] = merged;
            i++;
          } else {
            rewritten[n++] = ids[i];
          }
        }
        words[word] = java.util.Arrays.copyOf(rewritten, n);
        addPairs(word, +1);
        for (int i = 0; i + 1 < n; i++) {
          if (rewritten[i] == merged || rewritten[i + 1] == merged) {
            touched.add(key(rewritten[i], rewritten[i + 1]));
          }
        }
      }
      pairCounts.remove(key(left, right));
      for (long key : touched) {
        queue.add(entry(pairCounts.get(key), key));
      }
    }
  }

  private static String tokenizerJson(List<String> symbols, List<String> merges) {
    ObjectNode root = MAPPER.createObjectNode();
    root.put("version", "1.0");
    root.putNull("truncation");
    root.putNull("padding");
    ArrayNode added = root.putArray("added_tokens");
    added.add(addedToken(0, BOS));
    added.add(addedToken(1, EOS));
    root.putNull("normalizer");
    ObjectNode preTokenizer = root.putObject("pre_tokenizer");
    preTokenizer.put("type", "ByteLevel");
    preTokenizer.put("add_prefix_space", false);
    preTokenizer.put("trim_offsets", true);
    preTokenizer.put("use_regex", true);
    ObjectNode post = root.putObject("post_processor");
    post.put("type", "TemplateProcessing");
    ArrayNode single = post.putArray("single");
    single.addObject().putObject("SpecialToken").put("id", BOS).put("type_id", 0);
    single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
    ArrayNode pair = post.putArray("pair");
    pair.addObject().putObject("SpecialToken").put("id", BOS).put("type_id", 0);
    pair.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
    pair.addObject().putObject("SpecialToken").put("id", BOS).put("type_id", 1);
    pair.addObject().putObject("Sequence").put("id", "B").put("type_id", 1);
    ObjectNode bos = post.putObject("special_tokens").putObject(BOS);
    bos.put("id", BOS);
    bos.putArray("ids").add(0);
    bos.putArray("tokens").add(BOS);
    ObjectNode decoder = root.putObject("decoder");
    decoder.put("type", "ByteLevel");
    decoder.put("add_prefix_space", true);
    decoder.put("trim_offsets", true);
    decoder.put("use_regex", true);
    ObjectNode model = root.putObject("model");
    model.put("type", "BPE");
    model.putNull("dropout");
    model.putNull("unk_token");
    model.putNull("continuing_subword_prefix");
    model.putNull("end_of_word_suffix");
    model.put("fuse_unk", false);
    model.put("byte_fallback", false);
    model.put("ignore_merges", false);
    ObjectNode vocab = model.putObject("vocab");
    for (int id = 0; id < symbols.size(); id++) {
      vocab.put(symbols.get(id), id);
    }
    ArrayNode mergeArray = model.putArray("merges");
    merges.forEach(mergeArray::add);
    return write(root);
  }

  private static ObjectNode addedToken(int id, String content) {
    ObjectNode token = MAPPER.createObjectNode();
    token.put("id", id);
    token.put("content", content);
    token.put("single_word", false);
    token.put("lstrip", false);
    token.put("rstrip", false);
    token.put("normalized", false);
    token.put("special", true);
    return token;
  }

  private static String tokenizerConfigJson() {
    ObjectNode config = MAPPER.createObjectNode();
    config.put("add_bos_token", true);
    config.put("add_eos_token", false);
    config.put("bos_token", BOS);
    config.put("eos_token", EOS);
    config.put("model_max_length", 4096);
    config.put("tokenizer_class", "PreTrainedTokenizerFast");
    config.put("clean_up_tokenization_spaces", false);
    config.put("chat_template", CHAT_TEMPLATE);
    return write(config);
  }

  private static String write(ObjectNode node) {
    try {
      return MAPPER.writerWithDefaultPrettyPrinter().writeValueAsString(node);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("Jackson cannot write a tree it built", e);
    }
  }
}
