//! AWS price feeds: on-demand prices from the Price List Query API (`ondemand.rs`), current
//! spot prices per availability zone from EC2 DescribeSpotPriceHistory (`spot.rs`) and spot
//! interruption bands from the public spot advisor JSON (`advisor.rs`); `tables.rs` holds
//! the location→region and family→accelerator tables. The SDK configuration and error
//! mapping the two SDK sources share with the billing sources live in `remote::aws`.
pub mod advisor;
pub mod ondemand;
pub mod spot;
pub mod tables;

pub use advisor::AwsSpotAdvisorSource;
pub use ondemand::AwsOnDemandSource;
pub use spot::AwsSpotSource;
