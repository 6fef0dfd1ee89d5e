//! From the config file's `[[vrrp_instance]]` (keepalived's names, checked by
//! `config_file`) to what the VRRP speaker runs.
//!
//! Kept apart from the supervisor so the translation is tested without root: every key of
//! the seed's keepalived configuration must land where keepalived would put it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use memha_failover::hooks::Hooks;
use memha_failover::speaker::{InstanceSpec, TrackScript};
use memha_vrrp::{Auth, Config, InitialState, Version};

use crate::cli::RunOptions;
use crate::config_file::{VrrpInstance, VrrpState};

/// Every configured instance, ready for [`memha_failover::speaker::Speaker::open`].
pub fn instance_specs(opts: &RunOptions) -> Result<Vec<InstanceSpec>, String> {
    opts.vrrp_instances.iter().map(instance_spec).collect()
}

/// One instance. The primary address is left unspecified: the speaker takes
/// `unicast_src_ip` or the interface's own address.
pub fn instance_spec(v: &VrrpInstance) -> Result<InstanceSpec, String> {
    let what = format!("vrrp_instance {:?}", v.name);
    let vips: Vec<IpAddr> = v.virtual_ipaddress.iter().map(|a| a.addr).collect();
    let mut config = Config::new(
        &v.name,
        v.virtual_router_id,
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        vips,
    );
    config.version = if v.version == 3 {
        Version::V3
    } else {
        Version::V2
    };
    config.priority = v.priority;
    config.advert_int_cs = (v.advert_int * 100.0).round() as u16;
    config.initial_state = match v.state {
        VrrpState::Master => InitialState::Master,
        VrrpState::Backup => InitialState::Backup,
    };
    config.nopreempt = v.nopreempt;
    config.preempt_delay = Duration::from_secs_f64(v.preempt_delay);
    if let Some(pass) = &v.auth_pass {
        config.auth = Auth::password(pass.as_bytes());
    }
    let v4 = |ip: IpAddr, key: &str| match ip {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(format!("{what}: {key} {ip}: IPv6 is not supported yet")),
    };
    let unicast_src_ip = v
        .unicast_src_ip
        .map(|ip| v4(ip, "unicast_src_ip"))
        .transpose()?;
    let unicast_peers = v
        .unicast_peer
        .iter()
        .map(|ip| v4(*ip, "unicast_peer"))
        .collect::<Result<Vec<_>, _>>()?;
    for a in &v.virtual_ipaddress {
        v4(a.addr, "virtual_ipaddress")?;
    }
    Ok(InstanceSpec {
        config,
        interface: v.interface.clone(),
        vip_prefixes: v
            .virtual_ipaddress
            .iter()
            .map(|a| a.prefix.unwrap_or(32))
            .collect(),
        unicast_src_ip,
        unicast_peers,
        track_interfaces: v.track_interface.clone(),
        hold_unreplicated: v.hold_unreplicated,
        track_scripts: v
            .track_script
            .iter()
            .map(|s| TrackScript {
                name: s.name.clone(),
                script: s.script.clone(),
                interval: Duration::from_secs_f64(s.interval),
                timeout: Duration::from_secs_f64(s.timeout),
                fall: s.fall,
                rise: s.rise,
            })
            .collect(),
        use_vmac: v.use_vmac,
        hooks: Hooks {
            notify_master: v.notify_master.clone(),
            notify_backup: v.notify_backup.clone(),
            notify_fault: v.notify_fault.clone(),
            notify_stop: v.notify_stop.clone(),
            notify: v.notify.clone(),
        },
    })
}
