package io.moecluster.deploy.commands;

import io.moecluster.core.checkpoint.Preset;
import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/** Parses {@code --preset tiny|small|bench}. */
public final class PresetConverter implements ITypeConverter<Preset> {
  @Override
  public Preset convert(String value) {
    try {
      return Preset.valueOf(value.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      throw new TypeConversionException("unknown preset '" + value + "'; expected one of "
          + Arrays.stream(Preset.values()).map(Preset::cliName).collect(Collectors.joining(", ")));
    }
  }
}
