"""One predicate builder per search-parameter type (string, token, reference, date, number,
quantity, uri). Each turns one value of a parsed parameter into a SQL condition on its index
table, the same on SQLite and PostgreSQL."""
