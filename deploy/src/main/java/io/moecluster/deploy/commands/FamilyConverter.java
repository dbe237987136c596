package io.moecluster.deploy.commands;

import io.moecluster.core.config.ModelFamily;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.TypeConversionException;

/** Parses {@code --family} as a Hugging Face model_type. */
public final class FamilyConverter implements ITypeConverter<ModelFamily> {
  @Override
  public ModelFamily convert(String value) {
    return ModelFamily.fromModelType(value)
        .orElseThrow(() -> new TypeConversionException(
            "unknown family '" + value + "'; expected one of " + ModelFamily.supportedList()));
  }
}
