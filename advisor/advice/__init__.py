"""The plan (everything the advice rests on), how it is built, and the decision."""
