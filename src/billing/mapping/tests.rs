#[test]
fn the_fault_column_is_the_longest_header_name_leading_the_reason() {
    let header: Vec<String> = ["cost", "cost_at_list", "BilledCost", "tags"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let col = |r: &str| super::fault_column(&header, r);
    assert_eq!(col("cost: not a number: \"x\""), Some("cost".into()));
    assert_eq!(
        col("cost_at_list: not a number: \"x\""),
        Some("cost_at_list".into())
    );
    // Builders name the canonical column; the file's spelling is reported.
    assert_eq!(
        col("billedcost: missing required value"),
        Some("BilledCost".into())
    );
    assert_eq!(col("invalid JSON: EOF while parsing"), None);
    assert_eq!(col("cost + credits overflows"), None);
    assert_eq!(col("cost"), None);
}

use super::*;

use std::str::FromStr;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

#[test]
fn decimals_exact_and_lenient() {
    let mut dev = Deviations::default();
    assert_eq!(
        parse_decimal("0.0000000191107392311096200000", &mut dev),
        Some(d("0.00000001911073923110962"))
    );
    assert_eq!(
        parse_decimal("5.64902E-05", &mut dev),
        Some(d("0.0000564902"))
    );
    assert_eq!(parse_decimal("5e-06", &mut dev), Some(d("0.000005")));
    assert_eq!(dev.get(Dev::ScientificNotation), 2);
    assert_eq!(
        parse_decimal("\"$10,100.00 \"".trim_matches('"'), &mut dev),
        Some(d("10100.00"))
    );
    assert_eq!(parse_decimal("$20.00 ", &mut dev), Some(d("20")));
    assert_eq!(parse_decimal("-$1,000", &mut dev), Some(d("-1000")));
    assert_eq!(dev.get(Dev::MoneyFormattedString), 3);
    assert_eq!(parse_decimal("1,00", &mut dev), None);
    assert_eq!(parse_decimal("abc", &mut dev), None);
    assert_eq!(parse_decimal("1.2.3", &mut dev), None);
    assert_eq!(parse_decimal("NaN", &mut dev), None);
    assert_eq!(parse_decimal(" 1.5", &mut dev), Some(d("1.5")));
    assert_eq!(parse_decimal("-0E-11", &mut dev), Some(Decimal::ZERO));
}

#[test]
fn floats_go_through_shortest_text() {
    let mut dev = Deviations::default();
    assert_eq!(float_to_decimal(0.1, &mut dev).unwrap(), d("0.1"));
    assert_eq!(
        float_to_decimal(4064.4831315379, &mut dev).unwrap(),
        d("4064.4831315379")
    );
    assert_eq!(float_to_decimal(-5e-06, &mut dev).unwrap(), d("-0.000005"));
    assert_eq!(
        float_to_decimal(1.2e20, &mut dev).unwrap(),
        d("120000000000000000000")
    );
    assert_eq!(
        float_to_decimal(2.3198314011096954e-05, &mut dev).unwrap(),
        d("0.000023198314011096954")
    );
    assert_eq!(dev.get(Dev::FloatRounded), 0);
    assert!(float_to_decimal(f64::NAN, &mut dev).is_err());
}

fn ts(s: &str) -> String {
    parse_time(s)
        .map(|(t, _)| t.to_rfc3339())
        .unwrap_or_else(|| "ERR".into())
}

#[test]
fn timestamps_in_many_shapes() {
    assert_eq!(ts("2023-01-01T00:00:00Z"), "2023-01-01T00:00:00+00:00");
    assert_eq!(ts("2024-09-01 00:00:00"), "2024-09-01T00:00:00+00:00");
    assert_eq!(ts("2023-11-01T00:00:00.000Z"), "2023-11-01T00:00:00+00:00");
    assert_eq!(ts("2020-11-09 23:00:00+00:00"), "2020-11-09T23:00:00+00:00");
    assert_eq!(ts("2020-11-09 23:00:00 UTC"), "2020-11-09T23:00:00+00:00");
    assert_eq!(ts("2020-11-09T16:00:00-07:00"), "2020-11-09T23:00:00+00:00");
    assert_eq!(ts("2023-11-13T10:00Z"), "2023-11-13T10:00:00+00:00");
    // The FOCUS 1.2 spec example writes 30 h after midnight as T30.
    assert_eq!(ts("2023-02-01T30:00:00Z"), "2023-02-02T06:00:00+00:00");
    assert_eq!(ts("2021-02-02"), "2021-02-02T00:00:00+00:00");
    assert_eq!(ts("09/21/2023"), "2023-09-21T00:00:00+00:00");
    assert_eq!(ts("9/2/2023"), "2023-09-02T00:00:00+00:00");
    assert_eq!(ts("4/1/25"), "2025-04-01T00:00:00+00:00");
    assert_eq!(ts("9/2/2023 1:30:00 PM"), "2023-09-02T13:30:00+00:00");
    assert_eq!(ts("2023-02-30"), "ERR");
    assert_eq!(ts("13/01/2023"), "ERR");
    assert_eq!(ts("yesterday"), "ERR");
    assert_eq!(ts("2023-01-01X00:00:00"), "ERR");
    assert_eq!(ts("2023-01-01T25:00:00Z"), "2023-01-02T01:00:00+00:00");
    assert_eq!(ts("2023-01-01T48:00:00Z"), "ERR");
    let mut dev = Deviations::default();
    parse_time("2024-09-01 00:00:00").unwrap().1.count(&mut dev);
    parse_time("09/21/2023").unwrap().1.count(&mut dev);
    parse_time("2023-01-01T00:00:00Z")
        .unwrap()
        .1
        .count(&mut dev);
    assert_eq!(dev.get(Dev::TimestampSpaceNoZ), 1);
    assert_eq!(dev.get(Dev::DateMmDdYyyy), 1);
}

#[test]
fn tags_in_every_shape() {
    let mut dev = Deviations::default();
    let t = parse_tags(r#"{"a": "1", " org": "x", "n": 2, "z": null}"#, &mut dev).unwrap();
    assert_eq!(t.get(" org").map(String::as_str), Some("x"));
    assert_eq!(t.get("n").map(String::as_str), Some("2"));
    assert_eq!(t.get("z").map(String::as_str), Some(""));
    let t = parse_tags(r#""tagA": "valueA","tagB": "valueB""#, &mut dev).unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(dev.get(Dev::TagsMissingBraces), 1);
    let t = parse_tags(
        "[{'key': 'goog-resource-type', 'value': 'bigquery_dataset'}]",
        &mut dev,
    )
    .unwrap();
    assert_eq!(
        t.get("goog-resource-type").map(String::as_str),
        Some("bigquery_dataset")
    );
    let t = parse_tags(r#"[{"key": "env", "value": "prod"}]"#, &mut dev).unwrap();
    assert_eq!(t.get("env").map(String::as_str), Some("prod"));
    let t = parse_tags("{'team': 'a\\'b'}", &mut dev).unwrap();
    assert_eq!(t.get("team").map(String::as_str), Some("a'b"));
    assert_eq!(dev.get(Dev::TagsPythonRepr), 1);
    assert!(parse_tags("team=a;env=b", &mut dev).unwrap().is_empty());
    assert_eq!(dev.get(Dev::TagsUnparseable), 1);
}

#[test]
fn tags_nested_past_the_limit_are_an_error_not_a_crash() {
    let mut dev = Deviations::default();
    // 100k nested brackets: past serde_json's recursion limit and the literal reader's.
    for open in ["[", "{", "(", "{\"a\":"] {
        let deep = open.repeat(100_000);
        let e = parse_tags(&deep, &mut dev).unwrap_err();
        let at = 64 * open.len() + 1;
        assert_eq!(
            e,
            format!("tags nested deeper than 64 levels (at character {at})"),
            "{open}"
        );
    }
    // Brackets inside quoted strings do not count; 64 levels are still read.
    let quoted = format!("{{\"k\": \"{}\"}}", "[".repeat(1000));
    assert_eq!(parse_tags(&quoted, &mut dev).unwrap().len(), 1);
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(parse_tags(&ok, &mut dev).unwrap().is_empty());
    assert_eq!(
        dev.get(Dev::TagsUnparseable),
        1,
        "64 levels of empty lists are odd, not hostile"
    );
}

#[test]
fn credits_from_python_repr() {
    let mut dev = Deviations::default();
    let v = parse_credits(
        "[{'name': 'FreeTrial:Credit', 'amount': -5e-06, 'full_name': None, 'type': 'PROMOTION'}, {'amount': -1.5, 'type': 'COMMITTED_USAGE_DISCOUNT'}]",
        &mut dev,
    )
    .unwrap();
    match v {
        Val::Credits {
            sum,
            count,
            committed,
        } => {
            assert_eq!(sum, d("-1.500005"));
            assert_eq!(count, 2);
            assert!(committed);
        }
        other => panic!("{other:?}"),
    }
    assert!(parse_credits("[{'name': 'x'}]", &mut dev).is_err());
}

#[test]
fn localized_headers() {
    assert_eq!(
        normalize_header("Abonnement-GUID (SubscriptionGuid)"),
        "SubscriptionGuid"
    );
    assert_eq!(
        normalize_header("\u{feff}SubscriptionGuid"),
        "SubscriptionGuid"
    );
    assert_eq!(
        normalize_header("Maßeinheit (UnitOfMeasure)"),
        "UnitOfMeasure"
    );
    assert_eq!(
        normalize_header("costCategory/Charge type"),
        "costCategory/Charge type"
    );
}
