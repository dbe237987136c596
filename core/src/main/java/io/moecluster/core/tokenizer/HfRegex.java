package io.moecluster.core.tokenizer;

import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * Compiles the regular expressions found in tokenizer.json (written for Rust's regex crate or
 * Oniguruma) with java.util.regex. The syntax is nearly the same; the differences handled here are
 * Unicode-aware {@code \s \d \w} and script names such as {@code \p{Han}}, which Java spells {@code
 * \p{IsHan}}.
 */
final class HfRegex {
  /** The pre-tokenization pattern of GPT-2 and every ByteLevel pre-tokenizer with use_regex. */
  static final String GPT2_PATTERN =
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

  private HfRegex() {}

  static Pattern compile(String hfPattern, String source) {
    try {
      return Pattern.compile(translate(hfPattern), Pattern.UNICODE_CHARACTER_CLASS);
    } catch (PatternSyntaxException e) {
      throw new TokenizerException(
          source
              + ": the regex "
              + hfPattern
              + " cannot be compiled by java.util.regex ("
              + e.getDescription()
              + "); rewrite it without that construct",
          e);
    }
  }

  static String translate(String pattern) {
    StringBuilder out = new StringBuilder(pattern.length() + 16);
    for (int i = 0; i < pattern.length(); i++) {
      char c = pattern.charAt(i);
      if (c != '\\' || i + 1 >= pattern.length()) {
        out.append(c);
        continue;
      }
      char next = pattern.charAt(i + 1);
      boolean property = (next == 'p' || next == 'P') && i + 2 < pattern.length();
      if (property && pattern.charAt(i + 2) == '{') {
        int close = pattern.indexOf('}', i + 3);
        if (close > 0) {
          String name = pattern.substring(i + 3, close);
          // Java accepts "Is" before both categories and scripts, so one prefix covers both.
          boolean needsPrefix =
              !name.startsWith("Is") && !name.startsWith("In") && !name.contains("=");
          out.append('\\').append(next).append('{').append(needsPrefix ? "Is" : "").append(name);
          out.append('}');
          i = close;
          continue;
        }
      }
      out.append(c).append(next);
      i++;
    }
    return out.toString();
  }
}
