# Makes this directory a package when installed with pip; Salt's loader skips files starting with "_".
