//! Static lookup tables for the AWS adapters: the Price List's human-readable `location`
//! names mapped to region codes (used when an item has no `regionCode` attribute), and
//! accelerator-bearing instance families mapped to the accelerator model in SkyPilot's
//! naming plus the memory of one accelerator. Both tables are plain data; keep them sorted
//! by region code / family so additions are easy to review.

/// Price List `location` → region code, for every commercial AWS region (plus GovCloud,
/// which the same feed carries). The feed has used both "EU (…)" and "Europe (…)" and both
/// "Sao Paulo" and "São Paulo" over time, so both spellings are listed.
const LOCATIONS: &[(&str, &str)] = &[
    ("Africa (Cape Town)", "af-south-1"),
    ("Asia Pacific (Hong Kong)", "ap-east-1"),
    ("Asia Pacific (Taipei)", "ap-east-2"),
    ("Asia Pacific (Tokyo)", "ap-northeast-1"),
    ("Asia Pacific (Seoul)", "ap-northeast-2"),
    ("Asia Pacific (Osaka)", "ap-northeast-3"),
    ("Asia Pacific (Osaka-Local)", "ap-northeast-3"),
    ("Asia Pacific (Mumbai)", "ap-south-1"),
    ("Asia Pacific (Hyderabad)", "ap-south-2"),
    ("Asia Pacific (Singapore)", "ap-southeast-1"),
    ("Asia Pacific (Sydney)", "ap-southeast-2"),
    ("Asia Pacific (Jakarta)", "ap-southeast-3"),
    ("Asia Pacific (Melbourne)", "ap-southeast-4"),
    ("Asia Pacific (Malaysia)", "ap-southeast-5"),
    ("Asia Pacific (New Zealand)", "ap-southeast-6"),
    ("Asia Pacific (Thailand)", "ap-southeast-7"),
    ("Canada (Central)", "ca-central-1"),
    ("Canada West (Calgary)", "ca-west-1"),
    ("EU (Frankfurt)", "eu-central-1"),
    ("Europe (Frankfurt)", "eu-central-1"),
    ("EU (Zurich)", "eu-central-2"),
    ("Europe (Zurich)", "eu-central-2"),
    ("EU (Stockholm)", "eu-north-1"),
    ("Europe (Stockholm)", "eu-north-1"),
    ("EU (Milan)", "eu-south-1"),
    ("Europe (Milan)", "eu-south-1"),
    ("EU (Spain)", "eu-south-2"),
    ("Europe (Spain)", "eu-south-2"),
    ("EU (Ireland)", "eu-west-1"),
    ("Europe (Ireland)", "eu-west-1"),
    ("EU (London)", "eu-west-2"),
    ("Europe (London)", "eu-west-2"),
    ("EU (Paris)", "eu-west-3"),
    ("Europe (Paris)", "eu-west-3"),
    ("Israel (Tel Aviv)", "il-central-1"),
    ("Middle East (UAE)", "me-central-1"),
    ("Middle East (Bahrain)", "me-south-1"),
    ("Mexico (Central)", "mx-central-1"),
    ("South America (Sao Paulo)", "sa-east-1"),
    ("South America (São Paulo)", "sa-east-1"),
    ("US East (N. Virginia)", "us-east-1"),
    ("US East (Ohio)", "us-east-2"),
    ("US West (N. California)", "us-west-1"),
    ("US West (Oregon)", "us-west-2"),
    ("AWS GovCloud (US-East)", "us-gov-east-1"),
    ("AWS GovCloud (US-West)", "us-gov-west-1"),
    ("AWS GovCloud (US)", "us-gov-west-1"),
];

/// Maps a Price List `location` ("US East (N. Virginia)") to its region code ("us-east-1").
/// Exact match first, then a case- and whitespace-insensitive one.
pub fn region_for_location(location: &str) -> Option<&'static str> {
    let t = location.trim();
    if let Some((_, r)) = LOCATIONS.iter().find(|(l, _)| *l == t) {
        return Some(r);
    }
    let squash = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let wanted = squash(t);
    LOCATIONS
        .iter()
        .find(|(l, _)| squash(l) == wanted)
        .map(|(_, r)| *r)
}

/// All region codes the location table knows, sorted and deduplicated.
pub fn known_regions() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = LOCATIONS.iter().map(|(_, r)| *r).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The accelerator of one instance family.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accelerator {
    /// SkyPilot's name for the model ("A100-80GB", "T4", "Inferentia2").
    pub model: &'static str,
    /// Memory of one accelerator, GiB.
    pub memory_gib: f64,
}

/// Instance family (the part of the type before the first '.') → accelerator.
const ACCELERATORS: &[(&str, Accelerator)] = &[
    (
        "dl1",
        Accelerator {
            model: "Gaudi HL-205",
            memory_gib: 32.0,
        },
    ),
    (
        "g3",
        Accelerator {
            model: "M60",
            memory_gib: 8.0,
        },
    ),
    (
        "g3s",
        Accelerator {
            model: "M60",
            memory_gib: 8.0,
        },
    ),
    (
        "g4ad",
        Accelerator {
            model: "Radeon Pro V520",
            memory_gib: 8.0,
        },
    ),
    (
        "g4dn",
        Accelerator {
            model: "T4",
            memory_gib: 16.0,
        },
    ),
    (
        "g5",
        Accelerator {
            model: "A10G",
            memory_gib: 24.0,
        },
    ),
    (
        "g5g",
        Accelerator {
            model: "T4G",
            memory_gib: 16.0,
        },
    ),
    (
        "g6",
        Accelerator {
            model: "L4",
            memory_gib: 24.0,
        },
    ),
    (
        "g6e",
        Accelerator {
            model: "L40S",
            memory_gib: 48.0,
        },
    ),
    (
        "gr6",
        Accelerator {
            model: "L4",
            memory_gib: 24.0,
        },
    ),
    (
        "inf1",
        Accelerator {
            model: "Inferentia",
            memory_gib: 8.0,
        },
    ),
    (
        "inf2",
        Accelerator {
            model: "Inferentia2",
            memory_gib: 32.0,
        },
    ),
    (
        "p2",
        Accelerator {
            model: "K80",
            memory_gib: 12.0,
        },
    ),
    (
        "p3",
        Accelerator {
            model: "V100",
            memory_gib: 16.0,
        },
    ),
    (
        "p3dn",
        Accelerator {
            model: "V100",
            memory_gib: 32.0,
        },
    ),
    (
        "p4d",
        Accelerator {
            model: "A100",
            memory_gib: 40.0,
        },
    ),
    (
        "p4de",
        Accelerator {
            model: "A100-80GB",
            memory_gib: 80.0,
        },
    ),
    (
        "p5",
        Accelerator {
            model: "H100",
            memory_gib: 80.0,
        },
    ),
    (
        "p5e",
        Accelerator {
            model: "H200",
            memory_gib: 141.0,
        },
    ),
    (
        "p5en",
        Accelerator {
            model: "H200",
            memory_gib: 141.0,
        },
    ),
    (
        "p6-b200",
        Accelerator {
            model: "B200",
            memory_gib: 180.0,
        },
    ),
    (
        "trn1",
        Accelerator {
            model: "Trainium",
            memory_gib: 32.0,
        },
    ),
    (
        "trn1n",
        Accelerator {
            model: "Trainium",
            memory_gib: 32.0,
        },
    ),
    (
        "trn2",
        Accelerator {
            model: "Trainium2",
            memory_gib: 96.0,
        },
    ),
];

/// Accelerators per instance for types whose Price List item may carry no `gpu` count
/// (Neuron and Gaudi devices are not GPUs to the feed).
const ACCELERATOR_COUNTS: &[(&str, f64)] = &[
    ("dl1.24xlarge", 8.0),
    ("inf1.xlarge", 1.0),
    ("inf1.2xlarge", 1.0),
    ("inf1.6xlarge", 4.0),
    ("inf1.24xlarge", 16.0),
    ("inf2.xlarge", 1.0),
    ("inf2.8xlarge", 1.0),
    ("inf2.24xlarge", 6.0),
    ("inf2.48xlarge", 12.0),
    ("trn1.2xlarge", 1.0),
    ("trn1.32xlarge", 16.0),
    ("trn1n.32xlarge", 16.0),
    ("trn2.48xlarge", 16.0),
];

/// The family of an instance type: everything before the first '.' ("p4de.24xlarge" →
/// "p4de", "p6-b200.48xlarge" → "p6-b200").
pub fn family(instance_type: &str) -> &str {
    instance_type
        .split_once('.')
        .map_or(instance_type, |(f, _)| f)
}

/// The accelerator of an instance type's family, if the family has one.
pub fn accelerator_for(instance_type: &str) -> Option<Accelerator> {
    let fam = family(instance_type.trim()).to_ascii_lowercase();
    ACCELERATORS
        .iter()
        .find(|(f, _)| *f == fam)
        .map(|(_, a)| *a)
}

/// Accelerators per instance from the fallback table, for types the feed may not count.
pub fn accelerator_count_fallback(instance_type: &str) -> Option<f64> {
    let t = instance_type.trim().to_ascii_lowercase();
    ACCELERATOR_COUNTS
        .iter()
        .find(|(it, _)| *it == t)
        .map(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_map_to_regions() {
        assert_eq!(
            region_for_location("US East (N. Virginia)"),
            Some("us-east-1")
        );
        assert_eq!(region_for_location("EU (Frankfurt)"), Some("eu-central-1"));
        assert_eq!(
            region_for_location("Europe (Frankfurt)"),
            Some("eu-central-1")
        );
        assert_eq!(
            region_for_location("  us  west (oregon) "),
            Some("us-west-2")
        );
        assert_eq!(
            region_for_location("Asia Pacific (Taipei)"),
            Some("ap-east-2")
        );
        assert_eq!(region_for_location("US West (Los Angeles)"), None);
        let regions = known_regions();
        for r in [
            "af-south-1",
            "ap-east-1",
            "ap-northeast-3",
            "ap-south-2",
            "ap-southeast-7",
            "ca-west-1",
            "eu-central-2",
            "eu-south-2",
            "il-central-1",
            "me-central-1",
            "mx-central-1",
            "sa-east-1",
            "us-west-1",
        ] {
            assert!(regions.contains(&r), "{r} missing");
        }
    }

    #[test]
    fn families_map_to_skypilot_accelerators() {
        let m = |t: &str| accelerator_for(t).map(|a| a.model);
        assert_eq!(m("p3.2xlarge"), Some("V100"));
        assert_eq!(m("p3dn.24xlarge"), Some("V100"));
        assert_eq!(accelerator_for("p3dn.24xlarge").unwrap().memory_gib, 32.0);
        assert_eq!(m("p4d.24xlarge"), Some("A100"));
        assert_eq!(m("p4de.24xlarge"), Some("A100-80GB"));
        assert_eq!(m("p5.48xlarge"), Some("H100"));
        assert_eq!(m("p5en.48xlarge"), Some("H200"));
        assert_eq!(m("p6-b200.48xlarge"), Some("B200"));
        assert_eq!(m("g4dn.xlarge"), Some("T4"));
        assert_eq!(m("g5g.xlarge"), Some("T4G"));
        assert_eq!(m("g6e.xlarge"), Some("L40S"));
        assert_eq!(m("g4ad.xlarge"), Some("Radeon Pro V520"));
        assert_eq!(m("trn1n.32xlarge"), Some("Trainium"));
        assert_eq!(m("inf2.xlarge"), Some("Inferentia2"));
        assert_eq!(m("m5.large"), None);
        assert_eq!(accelerator_count_fallback("inf2.48xlarge"), Some(12.0));
        assert_eq!(accelerator_count_fallback("m5.large"), None);
    }
}
