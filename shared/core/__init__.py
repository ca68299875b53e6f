"""The domain, pure: columns, money, margins, views, validation rules, access policy. No I/O, no Azure SDK."""
